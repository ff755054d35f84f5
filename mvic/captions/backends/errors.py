"""The error taxonomy: backends translate their SDK's exceptions into these classes, so the retry
loop decides from the class alone (retry, stop the run, fall back to the template caption)."""

from __future__ import annotations

from .request import TokenUsage


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
    return any(
        n in ("ConnectError", "RemoteProtocolError", "ReadError", "WriteError", "APIConnectionError", "ConnectionError")
        for n in names
    )
