"""Estimated cost of a captioning run from its token usage.

List prices in USD per million tokens (input, output), standard paid tier, text and
image input alike. They change: the report calls the number an estimate, and an
unknown model (e.g. a local Ollama one) gets no number rather than a wrong one.
"""

from __future__ import annotations

from .backends.request import TokenUsage

# Longest prefix wins, so "gemini-2.5-flash-lite" is not priced as "gemini-2.5-flash".
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.0-flash-lite": (0.075, 0.30),
    "gemini-2.0-flash": (0.10, 0.40),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


def price_for(model: str) -> tuple[float, float] | None:
    name = model.strip().lower().removeprefix("models/")
    matches = [prefix for prefix in PRICES_PER_MILLION if name.startswith(prefix)]
    return PRICES_PER_MILLION[max(matches, key=len)] if matches else None


def estimate_cost_usd(model: str, usage: TokenUsage) -> float | None:
    price = price_for(model)
    if price is None:
        return None
    return (usage.input_tokens * price[0] + usage.output_tokens * price[1]) / 1_000_000
