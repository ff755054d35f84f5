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

BACKENDS = ("template", "gemini", "openai-compatible")
DEFAULT_MODELS = {"gemini": "gemini-2.5-flash", "openai-compatible": "gpt-4o-mini"}
KEY_ENV_VARS = {"gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "openai-compatible": ("OPENAI_API_KEY",)}


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


def _key_from_file(text: str, backend: str) -> str:
    """The file holds only the key, or .env-style lines such as `GEMINI_API_KEY=...`."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) == 1 and "=" not in lines[0]:
        return lines[0]
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        if name.strip() in KEY_ENV_VARS.get(backend, ()):
            return value.strip().strip("'\"")
    return ""


def resolve_api_key(backend: str, key_file: str = "") -> tuple[Secret, str]:
    """(key, where it came from). The key file wins over the environment."""
    if key_file.strip():
        path = Path(key_file.strip()).expanduser()
        try:
            value = _key_from_file(path.read_text(encoding="utf-8"), backend)
        except OSError as exc:
            raise ValueError(f"key file {path}: cannot read it ({exc.strerror}); point key_file at a text file holding only the key") from None
        if not value:
            names = " or ".join(KEY_ENV_VARS.get(backend, ("API_KEY",)))
            raise ValueError(f"key file {path} holds no key for {backend}: write only the key in it, or a line {names}=...")
        return Secret(value), f"key file {path}"
    for name in KEY_ENV_VARS.get(backend, ()):
        value = os.environ.get(name, "").strip()
        if value:
            return Secret(value), f"${name}"
    return Secret(""), ""


@dataclass(frozen=True)
class BackendConfig:
    backend: str
    model: str = ""
    base_url: str = ""
    api_key: Secret = field(default_factory=lambda: Secret(""), repr=False, compare=False)
    timeout_s: float = 60.0
    temperature: float = 0.2

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


def make_backend(config: BackendConfig, key_source: str = "") -> ModelBackend:
    """The SDKs are imported here, on first use: the template backend needs neither."""
    if config.backend == "gemini":
        from .gemini import GeminiBackend

        return GeminiBackend(config, key_source)
    if config.backend == "openai-compatible":
        from .openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(config, key_source)
    raise ValueError(f"backend {config.backend!r} is not a model backend; choose gemini or openai-compatible")
