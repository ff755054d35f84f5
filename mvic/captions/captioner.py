"""Stage 3 entry point: attach a marker caption to every composite.

`caption_composites(composites, settings)` -> (composites with captions, report).
Backends: `template` (offline, default), `gemini`, `openai-compatible`. A composite
the model fails on (blocked, invalid twice, server kept failing) gets the template
caption and is named in the report; a fatal error (quota exhausted for the day,
rejected key) stops the run with CaptionRunError after finished answers are cached.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..datatypes import Caption, Composite, Composites
from .backends.base import BACKENDS, BackendConfig, FatalError, TokenUsage, import_sdk, make_backend, redact, resolve_api_key
from .prompt import INPUT_MODES, PROMPT_VERSION
from .ratelimit import Cancelled, RequestGate
from .template import template_caption

log = logging.getLogger("mvic.captions")


@dataclass(frozen=True)
class CaptionSettings:
    backend: str = "template"  # "template", "gemini", "openai-compatible"
    model: str = ""  # "" = the backend's default (gemini-2.5-flash, gpt-4o-mini)
    base_url: str = ""
    key_file: str = ""  # a file holding only the key; else GEMINI_API_KEY / GOOGLE_API_KEY / OPENAI_API_KEY
    trigger: str = ""
    concurrency: int = 4
    rpm: int = 0  # requests per minute; 0 = no cap
    appearance_only: bool = False
    min_confidence: float = 0.5
    input_mode: str = "composite"  # or "views": the panels as separate images
    cache_dir: str = ""  # "" = ~/.cache/mvic/captions
    use_cache: bool = True
    timeout_s: float = 60.0
    max_attempts: int = 5
    retry_base_delay_s: float = 1.0
    retry_max_delay_s: float = 60.0
    max_output_tokens: int = 2048
    max_image_side: int = 1024
    max_consecutive_failures: int = 3  # the server failing this many composites in a row stops the run

    def check(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"caption backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"caption input mode {self.input_mode!r}: choose one of {', '.join(INPUT_MODES)}")
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError(f"concurrency = {self.concurrency}, max_attempts = {self.max_attempts}: both must be at least 1")
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
        who = f"{self.backend} {self.model}" + (f" (key from {self.key_source})" if self.key_source else "")
        cost = "unknown for this model" if self.estimated_cost_usd is None else f"${self.estimated_cost_usd:.4f} (list prices)"
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


def caption_composites(composites: Composites, settings: CaptionSettings = CaptionSettings(), on_progress=None) -> tuple[Composites, CaptionReport]:
    """Caption every composite. `on_progress(done, total)` runs on the calling thread and may
    raise to interrupt (ComfyUI's cancel button): workers then stop at their next wait."""
    settings.check()
    started = time.monotonic()
    if settings.backend == "template":
        items = []
        for done, composite in enumerate(composites.items, start=1):
            # A caption that came with the data (imported composites) is kept: the template knows less.
            kept = composite.caption is not None and composite.caption.came_with_data
            items.append(composite if kept else composite.with_caption(template_caption(composite, settings.trigger)))
            if on_progress:
                on_progress(done, len(composites.items))
        report = CaptionReport("template", total=len(items), elapsed_s=time.monotonic() - started,
                               kept=sum(c.caption.came_with_data for c in items))
        return Composites(items=items, skipped=list(composites.skipped)), report
    return _caption_with_model(composites, settings, on_progress, started)


def _caption_with_model(composites: Composites, settings: CaptionSettings, on_progress, started: float):
    # Imported here: pydantic and the cache are needed only by model backends.
    from .annotation import RenderOptions, render_annotation
    from .cache import CaptionCache, default_cache_dir
    from .jobs import JobRunner
    from .pricing import estimate_cost_usd
    from .retry import RetryPolicy

    threading.Thread(target=import_sdk, args=(settings.backend,), name="mvic-sdk-import", daemon=True).start()
    api_key, key_source = resolve_api_key(settings.backend, settings.key_file)
    config = BackendConfig(settings.backend, settings.model, settings.base_url, api_key, settings.timeout_s)
    model = config.model_name
    prompt_version = f"{PROMPT_VERSION}/{settings.input_mode}"
    report = CaptionReport(settings.backend, model, key_source, total=len(composites.items))
    stop = threading.Event()
    runner = JobRunner(
        make_backend=lambda: make_backend(config, key_source),
        cache=CaptionCache(settings.cache_dir or default_cache_dir()) if settings.use_cache else None,
        gate=RequestGate(settings.concurrency, settings.rpm, stop=stop, max_consecutive_failures=settings.max_consecutive_failures),
        policy=RetryPolicy(settings.max_attempts, settings.retry_base_delay_s, settings.retry_max_delay_s),
        prompt_version=prompt_version,
        backend_name=settings.backend,
        model=model,
        input_mode=settings.input_mode,
        max_side=settings.max_image_side,
        max_output_tokens=settings.max_output_tokens,
    )
    options = RenderOptions(settings.trigger, settings.appearance_only, settings.min_confidence)
    items: list[Composite | None] = [None] * len(composites.items)

    def accept(result) -> None:
        composite = composites.items[result.index]
        _count(report, result.stats, result)
        if result.annotation is not None:
            text = render_annotation(result.annotation, composite.markers, options)
            items[result.index] = composite.with_caption(_caption(text, settings, model, prompt_version))
        else:
            report.failures.append(CaptionFailure(composite.set_name, result.reason))
            items[result.index] = composite.with_caption(template_caption(composite, settings.trigger))

    # Two workers per request slot: while one waits for its answer, the other hashes and
    # JPEG-encodes the next composite, so a slot never idles on preparation. The gate
    # bounds the requests in flight to `concurrency`, not the threads.
    pool = ThreadPoolExecutor(max_workers=2 * settings.concurrency, thread_name_prefix="mvic-caption")
    finished_normally = False
    try:
        fatal = _collect(pool, runner, composites.items, accept, report, on_progress)
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
        raise CaptionRunError(redact(fatal, api_key), report)
    for failure in report.failures:
        log.warning("caption for %s: %s (template caption used)", failure.name, redact(failure.reason, api_key))
    return Composites(items=items, skipped=list(composites.skipped)), report


def _collect(pool, runner, composites: list[Composite], accept, report: CaptionReport, on_progress) -> str:
    """Run every composite's job; results are accepted on this thread, in completion order.
    Returns the fatal error that stopped the run, or ''."""
    pending = {pool.submit(runner.run, index, composite) for index, composite in enumerate(composites)}
    done = 0
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
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
