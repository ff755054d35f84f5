"""What every model backend speaks: one request in, one reply out (`errors.py` has the failures).

Backends translate their SDK's replies into these types, so the retry loop, the cache and the
report never see an SDK object. SDK retries are always off: `retry.py` owns every retry decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from .secret import Secret

PROTOCOLS = ("gemini", "openai-compatible")  # the wire protocols an endpoint speaks (mvic.settings.Endpoint.backend)
DEFAULT_MODELS = {"gemini": "gemini-2.5-flash", "openai-compatible": "gpt-4o-mini"}
# Where an endpoint with no base_url of its own sends: the provider's official address. The transport
# refuses every other origin for that endpoint, so its key cannot travel anywhere else.
OFFICIAL_BASE_URLS = {
    "gemini": "https://generativelanguage.googleapis.com/",
    "openai-compatible": "https://api.openai.com/v1",
}
DEFAULT_DEADLINE_S = 120.0
DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class RequestLimits:
    """What one HTTP request may cost: its whole time, first byte sent to last byte read
    (a server trickling a byte at a time cannot stretch it), and the bytes of its answer."""

    deadline_s: float = DEFAULT_DEADLINE_S
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


@dataclass(frozen=True)
class BackendConfig:
    backend: str
    model: str = ""
    base_url: str = ""  # "" = the provider's official address (OFFICIAL_BASE_URLS)
    api_key: Secret = field(default_factory=lambda: Secret(""), repr=False, compare=False)
    timeout_s: float = 60.0  # one network operation: connecting, or one wait for bytes
    temperature: float = 0.2
    limits: RequestLimits = RequestLimits()
    endpoint: str = ""  # the endpoint's name, for messages

    @property
    def address(self) -> str:
        return self.base_url.strip().rstrip("/") or OFFICIAL_BASE_URLS[self.backend].rstrip("/")

    @property
    def model_name(self) -> str:
        return self.model.strip() or DEFAULT_MODELS.get(self.backend, "")


@dataclass(frozen=True)
class ImagePart:
    data: bytes = field(repr=False)
    mime_type: str = "image/jpeg"


@dataclass(frozen=True)
class ModelRequest:
    label: str  # the composite's set name, for messages
    prompt: str
    images: tuple[ImagePart, ...]
    schema_panel_count: int
    max_output_tokens: int = 2048
    previous_answer: str = ""  # set on the one re-ask, with the problem quoted back
    reask: str = ""

    def with_reask(self, previous_answer: str, problem: str) -> "ModelRequest":
        return replace(self, previous_answer=previous_answer, reask=problem)

    def with_max_output_tokens(self, tokens: int) -> "ModelRequest":
        return replace(self, max_output_tokens=tokens)


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0  # includes thinking tokens: they are billed as output

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        return TokenUsage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ModelReply:
    text: str
    usage: TokenUsage = TokenUsage()


class ModelBackend(Protocol):
    name: str
    model: str

    def send(self, request: ModelRequest) -> ModelReply: ...

    def close(self) -> None: ...
