"""What every model backend speaks: one request in, one reply (or one classified error) out.

Backends translate their SDK's replies and exceptions into these types, so the retry
loop, the cache and the report never see an SDK object. SDK retries are always off:
`retry.py` owns every retry decision.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

PROTOCOLS = ("gemini", "openai-compatible")  # the wire protocols an endpoint speaks (mvic.settings.Endpoint.backend)
DEFAULT_MODELS = {"gemini": "gemini-2.5-flash", "openai-compatible": "gpt-4o-mini"}
# Where an endpoint with no base_url of its own sends: the provider's official address. The transport
# refuses every other origin for that endpoint, so its key cannot travel anywhere else.
# The names a key file's .env-style lines may use, when the endpoint names no variables of its own.
CONVENTIONAL_KEY_NAMES = {"gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "openai-compatible": ("OPENAI_API_KEY",)}
OFFICIAL_BASE_URLS = {
    "gemini": "https://generativelanguage.googleapis.com/",
    "openai-compatible": "https://api.openai.com/v1",
}
DEFAULT_DEADLINE_S = 120.0
DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024


class Secret:
    """An API key that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(self):  # no pickling the key into a cache or a ComfyUI history entry
        raise TypeError("an API key is not picklable")

    def __copy__(self) -> "Secret":
        return self

    def __deepcopy__(self, memo) -> "Secret":
        return self


def redact(text: str, secret: Secret | None) -> str:
    """Belt and braces for messages that quote SDK exceptions."""
    value = secret.reveal() if secret else ""
    return text.replace(value, "***") if len(value) >= 4 else text


def _key_from_file(text: str, names: tuple[str, ...]) -> str:
    """The file holds only the key, or .env-style lines such as `GEMINI_API_KEY=...`."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) == 1 and "=" not in lines[0]:
        return lines[0]
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        if name.strip() in names:
            return value.strip().strip("'\"")
    return ""


def endpoint_key(endpoint) -> tuple[Secret, str]:
    """(key, where it came from) for a locally configured endpoint (mvic.settings.Endpoint).
    Only the key sources named in that endpoint's own settings are read: an environment
    key is never sent to an endpoint it was not configured for. The key file wins."""
    if endpoint.key_file.strip():
        path = Path(endpoint.key_file.strip()).expanduser()
        names = endpoint.key_env or CONVENTIONAL_KEY_NAMES.get(endpoint.backend, ("API_KEY",))
        try:
            value = _key_from_file(path.read_text(encoding="utf-8"), names)
        except OSError as exc:
            raise ValueError(
                f"endpoint {endpoint.name!r}: cannot read its key file {path} ({exc.strerror}); fix it with "
                f"`python -m mvic config add-endpoint {endpoint.name} --key-file FILE ...`"
            ) from None
        if not value:
            raise ValueError(
                f"endpoint {endpoint.name!r}: key file {path} holds no key: write only the key in it, "
                f"or a line {' or '.join(names)}=..."
            )
        return Secret(value), f"key file {path}"
    for name in endpoint.key_env:
        value = os.environ.get(name, "").strip()
        if value:
            return Secret(value), f"${name}"
    return Secret(""), ""


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


class BackendError(Exception):
    """Base of the classified errors; `usage` counts tokens billed for the failed call."""

    usage = TokenUsage()


class TransientError(BackendError):
    """429 (per-minute), 5xx, timeouts, dropped connections: worth retrying."""

    def __init__(self, message: str, retry_after_s: float | None = None, status: int = 0):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.status = status


class FatalError(BackendError):
    """Stops the whole run: exhausted daily/zero quota, a rejected key, an unknown model."""

    stats = None  # set by the retry loop: what the composite that ended the run had sent


class BlockedError(BackendError):
    """The prompt or the answer was blocked by the provider's safety filter."""

    def __init__(self, message: str, usage: TokenUsage = TokenUsage()):
        super().__init__(message)
        self.usage = usage


class RejectedError(BackendError):
    """The server refused this one request (e.g. 400 for this image): not worth retrying."""


class ServerFault(BackendError):
    """This answer broke a limit or the protocol: too slow, too large, not JSON. The composite
    falls back to the template caption without a retry; it counts towards the run's breaker."""


class TruncatedError(BackendError):
    """The answer hit max_output_tokens before the JSON was complete."""

    def __init__(self, message: str, usage: TokenUsage = TokenUsage()):
        super().__init__(message)
        self.usage = usage


class ModelBackend(Protocol):
    name: str
    model: str

    def send(self, request: ModelRequest) -> ModelReply: ...

    def close(self) -> None: ...


def exception_chain_names(exc: BaseException) -> list[str]:
    """Class names along the exception's MRO and cause chain (SDKs wrap httpx/httpx2 errors)."""
    names, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names += [cls.__name__ for cls in type(exc).__mro__]
        exc = exc.__cause__ or exc.__context__
    return names


def is_timeout(exc: BaseException) -> bool:
    return any("Timeout" in name for name in exception_chain_names(exc))


def is_connection_error(exc: BaseException) -> bool:
    names = exception_chain_names(exc)
    return any(n in ("ConnectError", "RemoteProtocolError", "ReadError", "WriteError", "APIConnectionError", "ConnectionError") for n in names)


SDK_MODULES = {"gemini": ("google.genai", "google.genai.types", "google.genai.errors"), "openai-compatible": ("openai",)}


def import_sdk(backend: str) -> None:
    """Import the backend's SDK (about 0.4 s) without making a client: no key, no network.
    Run in a background thread at the start of a run, it overlaps hashing and encoding."""
    import importlib

    for name in SDK_MODULES.get(backend, ()):
        try:
            importlib.import_module(name)
        except ImportError:
            return  # make_backend reports it, with the package to install


def make_backend(config: BackendConfig, key_source: str = "", stop=None) -> ModelBackend:
    """The SDKs are imported here, on first use: the template backend needs neither.
    `stop` (a threading.Event) ends requests in flight within a fraction of a second."""
    if config.backend == "gemini":
        from .gemini import GeminiBackend

        return GeminiBackend(config, key_source, stop)
    if config.backend == "openai-compatible":
        from .openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(config, key_source, stop)
    raise ValueError(f"backend {config.backend!r} is not a model backend; choose gemini or openai-compatible")
