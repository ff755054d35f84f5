"""Bounded concurrency, a requests-per-minute cap and a circuit breaker, shared by every
worker of a run.

Free-tier limits are per minute (e.g. 10 requests/min), so concurrency alone is
not enough: 8 fast workers would send 8 requests in the first second and 429 on
the 11th. The cap is a sliding window: at most `per_minute` sends in any 60 s.

The breaker stops the run when the server fails that many composites in a row
(down, or refusing every request): outcomes are recorded while the request slot
is still held, so no other worker slips a request in before the run stops.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager


class Cancelled(Exception):
    """The run stopped (a fatal error elsewhere, or the user interrupted) while waiting."""


class RequestGate:
    def __init__(
        self,
        concurrency: int,
        per_minute: int = 0,
        period_s: float = 60.0,
        stop: threading.Event | None = None,
        max_consecutive_failures: int = 0,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency = {concurrency}: use at least 1")
        if per_minute < 0:
            raise ValueError(f"requests per minute = {per_minute}: use 0 (no cap) or a positive number")
        self.concurrency = concurrency
        self.per_minute = per_minute
        self.period_s = period_s
        self.stop = stop or threading.Event()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._sent: deque[float] = deque()
        self.max_consecutive_failures = max_consecutive_failures  # 0 = no breaker
        self._failures = 0

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0

    def record_failure(self) -> tuple[int, bool]:
        """One more composite the server failed: (failures in a row, whether the breaker
        tripped). Tripping stops the run."""
        with self._lock:
            self._failures += 1
            failures = self._failures
        tripped = bool(self.max_consecutive_failures) and failures >= self.max_consecutive_failures
        if tripped:
            self.stop.set()
        return failures, tripped

    def wait(self, seconds: float) -> None:
        """Sleep that ends early (raising Cancelled) when the run stops."""
        if self.stop.wait(max(0.0, seconds)):
            raise Cancelled()

    def _take_rate_token(self) -> None:
        if not self.per_minute:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                while self._sent and now - self._sent[0] >= self.period_s:
                    self._sent.popleft()
                if len(self._sent) < self.per_minute:
                    self._sent.append(now)
                    return
                pause = self._sent[0] + self.period_s - now
            self.wait(pause)

    @contextmanager
    def slot(self):
        """Hold one of `concurrency` request slots for the duration of one send."""
        while not self._slots.acquire(timeout=0.1):
            if self.stop.is_set():
                raise Cancelled()
        try:
            if self.stop.is_set():
                raise Cancelled()
            self._take_rate_token()
            yield
        finally:
            self._slots.release()
