"""The HTTP client both SDKs are given: one endpoint's origin only, a deadline per request,
a cap on the answer's size, and an end to requests in flight when the run stops.

Per-operation timeouts cannot bound a request: a server that sends a byte every 15 s
answers every read in time and keeps one request alive for ten minutes. So every socket
operation runs in short slices against the request's own deadline (`guarded_request`),
counts the bytes it reads, and looks at the run's stop event between slices (ComfyUI's
Cancel). The SDKs' calls are synchronous, so the request's guard is thread-local.

The client also refuses any origin but the endpoint's own (no redirects, no env proxies
chosen per URL by httpx): the key that belongs to an endpoint is only ever sent there.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
import zlib
from contextlib import contextmanager

import httpcore2
import httpx2

from ..ratelimit import Cancelled
from .errors import FatalError, ServerFault
from .request import RequestLimits

POLL_S = 0.2  # longest a socket wait goes without looking at the deadline and the stop event
WRITE_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_local = threading.local()


class RequestGuard:
    """One request's budget: time, bytes, and the run's stop event. `tripped` says which ran out."""

    def __init__(self, limits: RequestLimits, stop: threading.Event | None):
        self.limits = limits
        self.deadline = time.monotonic() + limits.deadline_s
        self.stop = stop
        self.received = 0
        self.tripped: Exception | None = None  # what guarded_request raises instead of the SDK's error

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> None:
        if self.stop is not None and self.stop.is_set():
            self.tripped = Cancelled()
            raise httpcore2.ReadError("the captioning run was stopped")
        if self.remaining() <= 0:
            self.tripped = ServerFault(
                f"no complete answer within {self.limits.deadline_s:g} s (the request's deadline)"
            )
            raise httpcore2.ReadTimeout(str(self.tripped))

    def wait_slice(self, op_end: float | None) -> float:
        self.check()
        wait = min(POLL_S, self.remaining())
        return wait if op_end is None else max(0.0, min(wait, op_end - time.monotonic()))

    def count(self, size: int, what: str = "answer") -> None:
        self.received += size
        if self.received > self.limits.max_response_bytes:
            cap = _size(self.limits.max_response_bytes)
            self.tripped = ServerFault(f"the {what} is larger than {cap} (the size cap); dropped")
            raise httpcore2.ReadError(str(self.tripped))


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count:,} bytes"


def current_guard() -> RequestGuard | None:
    return getattr(_local, "guard", None)


def _trip(error: Exception) -> Exception:
    """Record why this request ends (guarded_request raises it) and return it."""
    guard = current_guard()
    if guard is not None:
        guard.tripped = error
    return error


@contextmanager
def guarded_request(limits: RequestLimits, stop: threading.Event | None = None):
    """Wrap one SDK call. When a limit ran out, its error replaces whatever the SDK made of it."""
    guard = RequestGuard(limits, stop)
    _local.guard = guard
    try:
        yield guard
    except Exception:
        if guard.tripped is not None:
            raise guard.tripped from None
        raise
    finally:
        _local.guard = None


class _GuardedStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        guard = current_guard()
        if guard is None:
            return self._inner.read(max_bytes, timeout)
        op_end = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = guard.wait_slice(op_end)  # raises when the deadline passed or the run stopped
            try:
                data = self._inner.read(max_bytes, wait)
            except httpcore2.ReadTimeout:
                if op_end is not None and time.monotonic() >= op_end:
                    raise  # the SDK's own per-read timeout: a transient error, retried
                continue
            guard.count(len(data))
            return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        guard = current_guard()
        if guard is None:
            return self._inner.write(buffer, timeout)
        view = memoryview(buffer)
        for start in range(0, len(view), WRITE_CHUNK):
            guard.check()
            budget = max(0.001, guard.remaining())
            try:
                wait = budget if timeout is None else min(timeout, budget)
                self._inner.write(view[start : start + WRITE_CHUNK], wait)
            except httpcore2.WriteTimeout:
                guard.check()  # the deadline, if that is what ran out
                raise

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore2.NetworkStream:
        return _GuardedStream(self._inner.start_tls(ssl_context, server_hostname, _capped(timeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


def _capped(timeout: float | None) -> float | None:
    guard = current_guard()
    if guard is None:
        return timeout
    guard.check()
    return guard.remaining() if timeout is None else min(timeout, guard.remaining())


class _GuardedBackend(httpcore2.NetworkBackend):
    def __init__(self):
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _GuardedStream(self._inner.connect_tcp(host, port, _capped(timeout), local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _GuardedStream(self._inner.connect_unix_socket(path, _capped(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DecodedStream(httpx2.SyncByteStream):
    """gzip/deflate decoded here, under the size cap (a 2 MB gzip body can inflate to 2 GB)."""

    def __init__(self, raw: httpx2.SyncByteStream):
        self._raw = raw

    def __iter__(self):
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header
        guard = current_guard()
        cap = guard.limits.max_response_bytes if guard else 1 << 62
        produced = 0
        for chunk in self._raw:
            data = chunk
            while data:
                try:
                    out = decoder.decompress(data, cap - produced + 1)
                except zlib.error as exc:
                    fault = _trip(ServerFault(f"cannot decode the compressed answer: {exc}"))
                    raise httpx2.DecodingError(str(fault)) from None
                produced += len(out)
                if produced > cap:
                    raise httpx2.ReadError(
                        str(
                            _trip(
                                ServerFault(
                                    f"the decompressed answer is larger than {_size(cap)} (the size cap); dropped"
                                )
                            )
                        )
                    )
                if out:
                    yield out
                data = decoder.unconsumed_tail

    def close(self) -> None:
        self._raw.close()


def origin_of(url: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme, 0)


class EndpointTransport(httpx2.HTTPTransport):
    """httpx2's transport on the guarded network backend, locked to one origin."""

    def __init__(self, base_url: str, max_connections: int = 128):
        super().__init__(trust_env=False)
        self.origin = origin_of(base_url)
        ssl_context = httpx2.create_ssl_context()
        backend = _GuardedBackend()
        limits = dict(max_connections=max_connections, max_keepalive_connections=64, keepalive_expiry=5.0)
        proxy = _environment_proxy(base_url)
        if proxy is None:
            pool = httpcore2.ConnectionPool(ssl_context=ssl_context, network_backend=backend, **limits)
        else:
            pool = httpcore2.HTTPProxy(
                proxy_url=httpcore2.URL(
                    scheme=proxy.url.raw_scheme, host=proxy.url.raw_host, port=proxy.url.port, target=proxy.url.raw_path
                ),
                proxy_auth=proxy.raw_auth,
                proxy_headers=proxy.headers.raw,
                ssl_context=ssl_context,
                network_backend=backend,
                **limits,
            )
        self._pool.close()
        self._pool = pool  # HTTPTransport.handle_request sends through self._pool and maps its errors

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        if origin_of(url) != self.origin:
            raise httpx2.UnsupportedProtocol(
                str(
                    _trip(
                        FatalError(
                            f"refused to send a request to {url.split('?')[0]}: this endpoint is "
                            f"{self.origin[0]}://{self.origin[1]}:{self.origin[2]} and its key goes nowhere else"
                        )
                    )
                )
            )
        request.headers["Accept-Encoding"] = "identity"
        response = super().handle_request(request)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            return response
        if encoding not in ("gzip", "x-gzip", "deflate"):
            response.close()
            fault = _trip(ServerFault(f"the answer came with Content-Encoding {encoding!r}, which is not accepted"))
            raise httpx2.DecodingError(str(fault))
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in (b"content-encoding", b"content-length")]
        return httpx2.Response(
            response.status_code,
            headers=headers,
            stream=_DecodedStream(response.stream),
            extensions=response.extensions,
        )


def _environment_proxy(url: str) -> httpx2.Proxy | None:
    """The proxy this machine's environment names for `url` (HTTPS_PROXY, NO_PROXY, ...), as the SDKs would use."""
    scheme, host, _ = origin_of(url)
    proxies = urllib.request.getproxies_environment()
    if scheme not in proxies or urllib.request.proxy_bypass_environment(host, proxies):
        return None
    return httpx2.Proxy(url=proxies[scheme])


def endpoint_client(base_url: str, timeout_s: float) -> httpx2.Client:
    """An httpx2 client for one endpoint (both SDKs accept one): no redirects, no other host."""
    transport = EndpointTransport(base_url)
    return httpx2.Client(transport=transport, follow_redirects=False, trust_env=False, timeout=timeout_s)
