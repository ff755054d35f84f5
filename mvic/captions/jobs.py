"""One composite's way through a model run: cache look-up, image encoding, request,
cache write. Runs in a worker thread; identical composites in one run share one request."""

from __future__ import annotations

import io
import random
import threading
from dataclasses import dataclass, field

import numpy as np

from ..datatypes import Composite
from ..layout import split
from .annotation import ImageAnnotation
from .backends.request import ImagePart, ModelBackend, ModelRequest, TokenUsage
from .cache import CacheKey, CaptionCache
from .prompt import build_prompt
from .ratelimit import RequestGate
from .retry import CompositeFailed, RequestStats, RetryPolicy, request_annotation

JPEG_QUALITY = 90


def encode_jpeg(array: np.ndarray, max_side: int) -> bytes:
    from PIL import Image

    image = Image.fromarray(array)
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
        )
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def request_images(composite: Composite, input_mode: str, max_side: int) -> tuple[ImagePart, ...]:
    if input_mode == "views":
        panels = split(composite.image, composite.layout.rows, composite.layout.cols)
        return tuple(ImagePart(encode_jpeg(panel, max_side)) for panel in panels)
    return (ImagePart(encode_jpeg(composite.image, max_side)),)


@dataclass
class JobResult:
    index: int
    source: str  # "model", "cache", "failed"
    annotation: ImageAnnotation | None = None
    reason: str = ""
    stats: RequestStats = field(default_factory=RequestStats)
    cached_usage: TokenUsage = field(default_factory=TokenUsage)


@dataclass
class _Shared:
    done: threading.Event = field(default_factory=threading.Event)
    result: JobResult | None = None


class JobRunner:
    """What every worker shares: backend (made on the first miss), cache, gate, policy."""

    def __init__(
        self,
        make_backend,
        cache: CaptionCache | None,
        gate: RequestGate,
        policy: RetryPolicy,
        prompt_version: str,
        backend_name: str,
        model: str,
        input_mode: str,
        max_side: int,
        max_output_tokens: int,
    ):
        self._make_backend = make_backend
        self._backend: ModelBackend | None = None
        self._backend_lock = threading.Lock()
        self.cache, self.gate, self.policy = cache, gate, policy
        self.prompt_version, self.backend_name, self.model = prompt_version, backend_name, model
        self.input_mode, self.max_side, self.max_output_tokens = input_mode, max_side, max_output_tokens
        self._in_flight: dict[str, _Shared] = {}
        self._lock = threading.Lock()

    @property
    def backend(self) -> ModelBackend:
        # Made lazily: a run answered wholly from the cache needs no key, no SDK and no network.
        with self._backend_lock:
            if self._backend is None:
                self._backend = self._make_backend()
            return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    def run(self, index: int, composite: Composite) -> JobResult:
        key = CacheKey.for_composite(composite, self.prompt_version, self.backend_name, self.model)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return JobResult(index, "cache", hit.annotation, cached_usage=hit.usage)
        with self._lock:
            shared = self._in_flight.get(key.digest)
            leader = shared is None
            if leader:
                shared = self._in_flight[key.digest] = _Shared()
        if not leader:  # the same pixels are being captioned by another worker right now
            while not shared.done.wait(0.1):
                self.gate.wait(0)  # raises Cancelled when the run stops
            first = shared.result
            return JobResult(index, "cache" if first.annotation else "failed", first.annotation, first.reason)
        try:
            result = self._request(index, composite, key)
            shared.result = result
            return result
        finally:
            if shared.result is None:
                shared.result = JobResult(index, "failed", reason="the run stopped before this composite was captioned")
            shared.done.set()

    def _request(self, index: int, composite: Composite, key: CacheKey) -> JobResult:
        request = ModelRequest(
            label=composite.set_name,
            prompt=build_prompt(composite, self.input_mode),
            images=request_images(composite, self.input_mode, self.max_side),
            schema_panel_count=composite.layout.count,
            max_output_tokens=self.max_output_tokens,
        )
        try:
            annotation, stats = request_annotation(self.backend, request, self.policy, self.gate, random.Random())
        except CompositeFailed as failure:
            return JobResult(index, "failed", reason=failure.reason, stats=failure.stats)
        if self.cache is not None:
            self.cache.put(key, annotation, stats.usage)
        return JobResult(index, "model", annotation, stats=stats)
