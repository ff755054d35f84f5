"""The dataset job end to end (what `python -m mvic build` and the demo run):
source -> views -> composites -> captions -> export."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from .captions.captioner import CaptionSettings, caption_composites
from .composites import build_composites
from .consistency.hygiene import filter_composites
from .datatypes import Composites, MultiViewSets
from .export.dataset import ExportOptions, ExportReport, check_destination, save_dataset
from .export.transaction import BuildLock
from .files import default_workers
from .importing import build_imported_composites, is_imported, skipped_summary
from .layout import CompositeLayout
from .loading import load_multiview_sets
from .markers import DEFAULT_STYLE, MarkerStyle

logger = logging.getLogger(__name__)


@dataclass
class BuildSettings:
    source: str = "auto"
    input: str = ""
    out: str = "iclora_dataset"
    rows: int = 2  # 0: 2 for view sets; composites: read from their captions
    cols: int = 2
    panel_width: int = 512  # 0: 512 for view sets; composites: their own size (least refit)
    panel_height: int = 512
    fit: str = "crop"
    pad_color: tuple[int, int, int] = (0, 0, 0)
    divider_width: int = 0
    selection: str = "auto"
    max_sets: int = 0
    reject_blurred: bool = False
    reject_duplicates: bool = False
    min_consistency: float = 0.0  # drop composites whose views do not agree (mvic.consistency); 0 = keep all
    image_format: str = "png"
    trigger: str = ""
    overwrite_edited_captions: bool = False
    workers: int | None = None
    style: MarkerStyle = DEFAULT_STYLE
    captions: CaptionSettings = CaptionSettings()  # template (offline) unless a model backend is chosen
    wait_for_lock: float = 0.0  # seconds to wait when another build writes into `out`; 0 = stop at once


def _composites(settings: BuildSettings, sets: MultiViewSets) -> Composites:
    if is_imported(sets):
        grid = (settings.rows, settings.cols) if settings.rows and settings.cols else None
        composites = build_imported_composites(
            sets,
            grid,
            (settings.panel_width, settings.panel_height),
            settings.fit,
            settings.pad_color,
            settings.style,
            settings.divider_width,
            workers=settings.workers,
        )
        if not composites.items:
            summary = skipped_summary(composites.skipped)
            raise ValueError(f"no composite could be imported from {settings.input}:\n{summary}")
        return composites
    layout = CompositeLayout(
        settings.rows or 2,
        settings.cols or 2,
        settings.panel_width or 512,
        settings.panel_height or 512,
        settings.divider_width,
    )
    return build_composites(sets, layout, settings.fit, settings.pad_color, settings.style, settings.workers)


def build_dataset(settings: BuildSettings, log=logger.info) -> ExportReport:
    """The folder is locked for the whole build (before any captioning request is paid for)."""
    out = Path(settings.out).expanduser()
    check_destination(out, ExportOptions(settings.image_format, settings.trigger))
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        report = _locked_build(settings, out, log)
    except BaseException:
        if created:  # a refused build leaves no empty folder behind
            _remove_if_empty(out)
        raise
    log(report.text())
    return report


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _locked_build(settings: BuildSettings, out: Path, log) -> ExportReport:
    with BuildLock(out, "python -m mvic build").held(settings.wait_for_lock) as lock:
        views = (settings.rows or 2) * (settings.cols or 2)
        sets = load_multiview_sets(
            settings.source,
            settings.input,
            views,
            settings.selection,
            settings.max_sets,
            settings.reject_blurred,
            settings.reject_duplicates,
        )
        log(sets.report())
        composites = _composites(settings, sets)
        for note in composites.notes:
            log(note)
        if settings.min_consistency:
            composites, lines = filter_composites(
                composites, settings.min_consistency, workers=settings.workers or default_workers()
            )
            log("\n".join(lines))
        captioned, caption_report = caption_composites(composites, replace(settings.captions, trigger=settings.trigger))
        log(caption_report.text())
        report = save_dataset(
            captioned,
            out,
            settings.image_format,
            settings.trigger,
            settings.overwrite_edited_captions,
            workers=settings.workers,
            lock=lock,
        )
    return report
