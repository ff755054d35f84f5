"""Our retry loop around one composite's request. The SDKs' own retries are off, so
every send is counted and every wait is decided here:

- 429 / 5xx / timeouts / dropped connections: exponential backoff with jitter, at
  most `max_attempts` sends; a server-given `retryDelay` is honoured (never less);
- quota exhausted for the day, a rejected key, an unknown model: FatalError, no retry;
- invalid JSON or schema: one re-ask quoting the validation error, then a failure;
- answer cut at max_output_tokens: one retry with twice the budget, then a failure;
- blocked prompt / answer, or a 400 for this request: a failure, no retry;
- an answer that broke a limit or the protocol (past the request's deadline, over the
  size cap, a 200 that is not JSON): a failure, no retry.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from .annotation import AnnotationError, ImageAnnotation, parse_annotation
from .backends.errors import BlockedError, FatalError, RejectedError, ServerFault, TransientError, TruncatedError
from .backends.request import ModelBackend, ModelRequest, TokenUsage
from .ratelimit import RequestGate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5  # sends for one composite that end in a transient error, first one included
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter: float = 0.25  # the backoff is scaled by a random factor in [1 - jitter, 1 + jitter]
    max_server_delay_s: float = 600.0  # a longer retryDelay means "not within this run"
    max_output_tokens_cap: int = 16384

    def backoff_s(self, failures: int, rng: random.Random) -> float:
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1))
        return min(self.max_delay_s, delay * rng.uniform(1 - self.jitter, 1 + self.jitter))

    def server_delay_s(self, retry_after_s: float, rng: random.Random) -> float:
        # Never earlier than the server asked; a little later, so workers told the same delay do not return in lockstep.
        return retry_after_s + rng.uniform(0, self.jitter * self.base_delay_s)


@dataclass
class RequestStats:
    requests: int = 0  # sends, i.e. HTTP requests
    retries: int = 0  # sends after a transient error or a truncated answer
    reasks: int = 0
    waited_s: float = 0.0
    usage: TokenUsage = field(default_factory=TokenUsage)


class CompositeFailed(Exception):
    """This composite gets no model caption; the run goes on."""

    def __init__(self, reason: str, stats: RequestStats):
        super().__init__(reason)
        self.reason = reason
        self.stats = stats


def _widened(
    exc: TruncatedError,
    request: ModelRequest,
    policy: RetryPolicy,
    gate: RequestGate,
    stats: RequestStats,
    widened: bool,
) -> ModelRequest:
    """An answer cut at max_output_tokens is asked again once, with twice the tokens; a second cut fails."""
    gate.record_success()
    stats.usage += exc.usage
    if widened or request.max_output_tokens * 2 > policy.max_output_tokens_cap:
        raise CompositeFailed(
            f"{exc} ({request.max_output_tokens} tokens) even after one retry; raise max_output_tokens", stats
        ) from None
    stats.retries += 1
    request = request.with_max_output_tokens(request.max_output_tokens * 2)
    log.info("%s: answer cut at max_output_tokens; asking again with %d", request.label, request.max_output_tokens)
    return request


def request_annotation(
    backend: ModelBackend,
    request: ModelRequest,
    policy: RetryPolicy,
    gate: RequestGate,
    rng: random.Random | None = None,
) -> tuple[ImageAnnotation, RequestStats]:
    """Send until a valid annotation comes back; raises CompositeFailed, FatalError or Cancelled."""
    rng = rng or random.Random()
    stats = RequestStats()
    transient_failures = 0
    widened = False
    while True:
        with gate.slot():  # every outcome below is decided while the slot is held
            stats.requests += 1
            try:
                reply = backend.send(request)
            except TransientError as exc:
                transient_failures += 1
                if transient_failures >= policy.max_attempts:
                    _fail_systemic(gate, f"gave up after {transient_failures} attempts; last error: {exc}", stats)
                error = exc
            except FatalError as exc:
                gate.stop.set()
                exc.stats = stats  # the report still counts the request that ended the run
                raise
            except RejectedError as exc:
                _fail_systemic(gate, f"the server refused the request: {exc}", stats)
            except ServerFault as exc:
                _fail_systemic(gate, str(exc), stats)
            except BlockedError as exc:
                gate.record_success()  # the server works; this image is the problem
                stats.usage += exc.usage
                raise CompositeFailed(str(exc), stats) from None
            except TruncatedError as exc:
                request, widened = _widened(exc, request, policy, gate, stats, widened), True
                continue
            else:
                gate.record_success()
                error = None
        if error is not None:
            _wait_after_transient(error, transient_failures, request, policy, gate, rng, stats)
            continue
        stats.usage += reply.usage
        try:
            return parse_annotation(reply.text, request.schema_panel_count), stats
        except AnnotationError as exc:
            if request.reask:
                raise CompositeFailed(f"invalid answer even after a re-ask: {exc}", stats) from None
            stats.reasks += 1
            log.info("%s: %s; asking once more", request.label, exc)
            request = request.with_reask(reply.text, str(exc))


def _fail_systemic(gate: RequestGate, reason: str, stats: RequestStats) -> None:
    """The server kept failing or refused the request itself: likely to happen to the next
    composite too (unlike a blocked image), so it counts towards the gate's breaker."""
    failures, tripped = gate.record_failure()  # tripping sets gate.stop at once
    if tripped:
        error = FatalError(
            f"the caption server failed {failures} composites in a row (last: {reason}); "
            "check the endpoint's server, then re-run (finished captions are cached)"
        )
        error.stats = stats
        raise error
    raise CompositeFailed(reason, stats)


def _wait_after_transient(
    error: TransientError,
    failures: int,
    request: ModelRequest,
    policy: RetryPolicy,
    gate: RequestGate,
    rng,
    stats: RequestStats,
) -> None:
    if error.retry_after_s is not None and error.retry_after_s > policy.max_server_delay_s:
        gate.stop.set()
        fatal = FatalError(
            f"the server asks to wait {error.retry_after_s:.0f} s before retrying ({error}); re-run later"
        )
        fatal.stats = stats
        raise fatal
    if error.retry_after_s is not None:
        delay = policy.server_delay_s(error.retry_after_s, rng)
    else:
        delay = policy.backoff_s(failures, rng)
    log.info("%s: %s; retry %d in %.1f s", request.label, error, failures, delay)
    stats.retries += 1
    stats.waited_s += delay
    gate.wait(delay)  # outside the slot: a waiting worker does not hold a request slot
