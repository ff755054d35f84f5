"""Stage 3 entry point: attach a marker caption to every composite.

`caption_composites(composites, settings)` -> (composites with captions, report).
`settings.endpoint` None is the offline `template` backend (default); otherwise a
locally configured endpoint (mvic.settings.Endpoint) that speaks `gemini` or
`openai-compatible`, with the one key that belongs to it. A composite the model fails
on (blocked, invalid twice, server kept failing, an answer past the deadline or the
size cap, a 200 that is not JSON) gets the template caption and is named in the
report; a fatal error (quota exhausted for the day, rejected key) stops the run with
CaptionRunError after finished answers are cached.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..datatypes import Caption, Composite, Composites
from ..settings import Endpoint
from .backends import make_backend
from .backends.errors import FatalError
from .backends.request import (
    DEFAULT_DEADLINE_S,
    DEFAULT_MAX_RESPONSE_BYTES,
    PROTOCOLS,
    BackendConfig,
    RequestLimits,
    TokenUsage,
)
from .backends.sdk import import_sdk
from .backends.secret import endpoint_key, redact
from .prompt import INPUT_MODES, PROMPT_VERSION
from .ratelimit import Cancelled, RequestGate
from .template import template_caption
from .text import plain_text, shorten

log = logging.getLogger(__name__)
CANCEL_POLL_S = 0.2  # how often a waiting run asks check_cancel (ComfyUI's Cancel must act within seconds)
MAX_TRIGGER_CHARS = 100
MAX_REASON_CHARS = 300
# Model names go into the request's URL path (Gemini) or body: a name, not a path or a query.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def check_trigger(trigger: str, what: str = "trigger") -> None:
    if len(trigger) > MAX_TRIGGER_CHARS:
        raise ValueError(
            f"{what} is {len(trigger):,} characters long; a trigger word may have at most {MAX_TRIGGER_CHARS}"
        )
    if plain_text(trigger) != " ".join(trigger.split()):
        raise ValueError(f"{what} {trigger[:40]!r} holds control characters; use plain words")


def check_model_name(model: str, what: str = "model") -> None:
    if model.strip() and (not MODEL_NAME.match(model.strip()) or ".." in model):
        raise ValueError(
            f"{what} {model[:60]!r}: a model name such as gemini-2.5-flash, gpt-4o-mini or llava:13b "
            "(letters, digits and . _ : / @ + -, at most 128)"
        )


@dataclass(frozen=True)
class CaptionSettings:
    endpoint: Endpoint | None = None  # None = the offline template backend; else a configured endpoint (mvic.settings)
    model: str = ""  # "" = the protocol's default (gemini-2.5-flash, gpt-4o-mini)
    trigger: str = ""
    concurrency: int = 4
    rpm: int = 0  # requests per minute; 0 = no cap
    appearance_only: bool = False
    min_confidence: float = 0.5
    input_mode: str = "composite"  # or "views": the panels as separate images
    cache_dir: str = ""  # "" = ~/.cache/mvic/captions (chosen locally: settings or the CLI, never a widget)
    use_cache: bool = True
    timeout_s: float = 60.0  # one network operation (connecting, one wait for bytes)
    deadline_s: float = DEFAULT_DEADLINE_S  # one whole request, however the server trickles
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_attempts: int = 5
    retry_base_delay_s: float = 1.0
    retry_max_delay_s: float = 60.0
    max_output_tokens: int = 2048
    max_image_side: int = 1024
    max_consecutive_failures: int = 3  # the server failing this many composites in a row stops the run

    @property
    def backend(self) -> str:
        return self.endpoint.backend if self.endpoint is not None else "template"

    def check(self) -> None:
        if self.endpoint is not None and self.endpoint.backend not in PROTOCOLS:
            raise ValueError(
                f"endpoint {self.endpoint.name!r}: protocol {self.endpoint.backend!r}; "
                f"use one of {', '.join(PROTOCOLS)}"
            )
        check_trigger(self.trigger)
        check_model_name(self.model)
        if self.deadline_s <= 0 or self.max_response_bytes < 1024:
            raise ValueError(
                f"deadline {self.deadline_s} s, response cap {self.max_response_bytes} bytes: "
                "the deadline must be positive and the cap at least 1 KiB"
            )
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"caption input mode {self.input_mode!r}: choose one of {', '.join(INPUT_MODES)}")
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError(
                f"concurrency = {self.concurrency}, max_attempts = {self.max_attempts}: both must be at least 1"
            )
        if self.rpm < 0:
            raise ValueError(f"rpm = {self.rpm}: use 0 (no cap) or a positive number of requests per minute")


@dataclass(frozen=True)
class CaptionFailure:
    name: str
    reason: str


@dataclass
class CaptionReport:
    backend: str
    model: str = ""
    endpoint: str = ""
    key_source: str = ""  # where the key came from ("$GEMINI_API_KEY", "key file ..."), never the key
    total: int = 0
    from_model: int = 0
    from_cache: int = 0
    failures: list[CaptionFailure] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    reasks: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    saved_usage: TokenUsage = field(default_factory=TokenUsage)  # what the cache hits had cost
    estimated_cost_usd: float | None = None
    elapsed_s: float = 0.0
    kept: int = 0  # captions that came with the data, kept as they are (template backend)

    def text(self) -> str:
        if self.backend == "template":
            kept = f", {self.kept} kept their own caption" if self.kept else ""
            return f"captions: template backend (offline), {self.total - self.kept} composite(s) captioned{kept}"
        where = f" at endpoint {self.endpoint!r}" if self.endpoint else ""
        key = f" (key from {self.key_source})" if self.key_source else " (no key)"
        who = f"{self.backend} {self.model}{where}{key}"
        cost = (
            "unknown for this model"
            if self.estimated_cost_usd is None
            else f"${self.estimated_cost_usd:.4f} (list prices)"
        )
        rate = f", {self.total / self.elapsed_s:.1f} composites/s" if self.elapsed_s > 0 else ""
        lines = [
            f"captions: {who}",
            f"{self.total} composite(s): {self.from_model} captioned by the model, {self.from_cache} from cache, "
            f"{len(self.failures)} fell back to the template caption",
            f"{self.requests} request(s): {self.retries} retried, {self.reasks} re-asked; "
            f"tokens {self.usage.input_tokens:,} in + {self.usage.output_tokens:,} out; estimated cost {cost}",
            f"{self.elapsed_s:.1f} s{rate}",
        ]
        lines += [f"template caption used for {f.name}: {f.reason}" for f in self.failures]
        return "\n".join(lines)


class CaptionRunError(RuntimeError):
    """The run stopped (quota, key, server down); `report` says what was done before."""

    def __init__(self, message: str, report: CaptionReport):
        super().__init__(f"{message}\n{report.text()}")
        self.report = report


def _caption(text: str, settings: CaptionSettings, model: str, prompt_version: str) -> Caption:
    return Caption(text=text, backend=settings.backend, model=model, prompt_version=prompt_version)


def caption_composites(
    composites: Composites, settings: CaptionSettings = CaptionSettings(), on_progress=None, check_cancel=None
) -> tuple[Composites, CaptionReport]:
    """Caption every composite. `on_progress(done, total)` runs on the calling thread, and
    `check_cancel()` every fraction of a second while requests are in flight; either may raise
    to interrupt (ComfyUI's Cancel): requests in flight then end within a fraction of a second."""
    settings.check()
    started = time.monotonic()
    if settings.endpoint is None:
        items = []
        for done, composite in enumerate(composites.items, start=1):
            # A caption that came with the data (imported composites) is kept: the template knows less.
            kept = composite.caption is not None and composite.caption.came_with_data
            items.append(composite if kept else composite.with_caption(template_caption(composite, settings.trigger)))
            if on_progress:
                on_progress(done, len(composites.items))
        report = CaptionReport(
            "template",
            total=len(items),
            elapsed_s=time.monotonic() - started,
            kept=sum(c.caption.came_with_data for c in items),
        )
        return Composites(items=items, skipped=list(composites.skipped)), report
    return _caption_with_model(composites, settings, on_progress, check_cancel, started)


def _make_runner(settings: CaptionSettings, config: BackendConfig, key_source: str, stop: threading.Event):
    # Imported here: pydantic and the cache are needed only by model backends.
    from .cache import CaptionCache, default_cache_dir
    from .jobs import JobRunner
    from .retry import RetryPolicy

    return JobRunner(
        make_backend=lambda: make_backend(config, key_source, stop),
        cache=CaptionCache(settings.cache_dir or default_cache_dir()) if settings.use_cache else None,
        gate=RequestGate(
            settings.concurrency, settings.rpm, stop=stop, max_consecutive_failures=settings.max_consecutive_failures
        ),
        policy=RetryPolicy(settings.max_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s),
        prompt_version=f"{PROMPT_VERSION}/{settings.input_mode}",
        backend_name=settings.backend,
        model=config.model_name,
        input_mode=settings.input_mode,
        max_side=settings.max_image_side,
        max_output_tokens=settings.max_output_tokens,
    )


def _caption_with_model(composites: Composites, settings: CaptionSettings, on_progress, check_cancel, started: float):
    from .annotation import RenderOptions, render_annotation
    from .pricing import estimate_cost_usd

    threading.Thread(target=import_sdk, args=(settings.backend,), name="mvic-sdk-import", daemon=True).start()
    endpoint = settings.endpoint
    api_key, key_source = endpoint_key(endpoint)
    limits = RequestLimits(settings.deadline_s, settings.max_response_bytes)
    config = BackendConfig(
        endpoint.backend,
        settings.model,
        endpoint.base_url,
        api_key,
        settings.timeout_s,
        limits=limits,
        endpoint=endpoint.name,
    )
    model = config.model_name
    prompt_version = f"{PROMPT_VERSION}/{settings.input_mode}"
    report = CaptionReport(settings.backend, model, endpoint.name, key_source, total=len(composites.items))
    stop = threading.Event()
    runner = _make_runner(settings, config, key_source, stop)
    options = RenderOptions(settings.trigger, settings.appearance_only, settings.min_confidence)
    items: list[Composite | None] = [None] * len(composites.items)

    def accept(result) -> None:
        composite = composites.items[result.index]
        _count(report, result.stats, result)
        if result.annotation is not None:
            text = render_annotation(result.annotation, composite.markers, options)
            items[result.index] = composite.with_caption(_caption(text, settings, model, prompt_version))
        else:
            reason = shorten(plain_text(redact(result.reason, api_key)), MAX_REASON_CHARS)  # server words: bounded
            report.failures.append(CaptionFailure(composite.set_name, reason))
            items[result.index] = composite.with_caption(template_caption(composite, settings.trigger))

    # Two workers per request slot: while one waits for its answer, the other hashes and
    # JPEG-encodes the next composite, so a slot never idles on preparation. The gate
    # bounds the requests in flight to `concurrency`, not the threads.
    pool = ThreadPoolExecutor(max_workers=2 * settings.concurrency, thread_name_prefix="mvic-caption")
    finished_normally = False
    try:
        fatal = _collect(pool, runner, composites.items, accept, report, on_progress, check_cancel)
        finished_normally = True
    finally:
        stop.set()  # wakes every waiting worker; they end with Cancelled
        # Stopped early (fatal error, cancel button): do not sit out requests still in flight.
        pool.shutdown(wait=finished_normally and not fatal, cancel_futures=True)
        if finished_normally and not fatal:
            runner.close()
        report.estimated_cost_usd = estimate_cost_usd(model, report.usage)
        report.elapsed_s = time.monotonic() - started
    missing = sum(item is None for item in items)
    if missing and not fatal:  # never hand on a partial set as if it were complete
        fatal = f"the run stopped before {missing} composite(s) were captioned"
    if fatal:
        raise CaptionRunError(shorten(plain_text(redact(fatal, api_key)), 4 * MAX_REASON_CHARS), report)
    for failure in report.failures:
        log.warning("caption for %s: %s (template caption used)", failure.name, redact(failure.reason, api_key))
    return Composites(items=items, skipped=list(composites.skipped)), report


def _collect(
    pool, runner, composites: list[Composite], accept, report: CaptionReport, on_progress, check_cancel=None
) -> str:
    """Run every composite's job; results are accepted on this thread, in completion order.
    Returns the fatal error that stopped the run, or ''."""
    pending = {pool.submit(runner.run, index, composite) for index, composite in enumerate(composites)}
    done = 0
    while pending:
        if check_cancel:
            check_cancel()
        finished, pending = wait(pending, timeout=CANCEL_POLL_S, return_when=FIRST_COMPLETED)
        for future in finished:
            try:
                result = future.result()
            except FatalError as exc:
                _count(report, exc.stats)
                return str(exc)
            except Cancelled:
                continue
            accept(result)
            done += 1
            if on_progress:
                on_progress(done, len(composites))
    return ""


def _count(report: CaptionReport, stats, result=None) -> None:
    if result is not None and result.source == "model":
        report.from_model += 1
    elif result is not None and result.source == "cache":
        report.from_cache += 1
        report.saved_usage += result.cached_usage
    if stats is not None:
        report.requests += stats.requests
        report.retries += stats.retries
        report.reasks += stats.reasks
        report.usage += stats.usage
