"""The dataset job end to end (what `python -m mvic build` and the demo run):
source -> views -> composites -> captions -> export."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from .captions.captioner import CaptionSettings, caption_composites
from .composites import build_composites, default_workers
from .consistency.hygiene import filter_composites
from .export.dataset import ExportReport, save_dataset
from .layout import CompositeLayout
from .loading import load_multiview_sets
from .markers import DEFAULT_STYLE, MarkerStyle


@dataclass
class BuildSettings:
    source: str = "auto"
    input: str = ""
    out: str = "iclora_dataset"
    rows: int = 2
    cols: int = 2
    panel_width: int = 512
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


def build_dataset(settings: BuildSettings, log=print) -> ExportReport:
    layout = CompositeLayout(settings.rows, settings.cols, settings.panel_width, settings.panel_height, settings.divider_width)
    sets = load_multiview_sets(
        settings.source, settings.input, layout.count, settings.selection, settings.max_sets,
        settings.reject_blurred, settings.reject_duplicates,
    )
    log(sets.report())
    composites = build_composites(sets, layout, settings.fit, settings.pad_color, settings.style, settings.workers)
    if settings.min_consistency:
        workers = settings.workers or default_workers()
        composites, lines = filter_composites(composites, settings.min_consistency, workers=workers)
        log("\n".join(lines))
    captioned, caption_report = caption_composites(composites, replace(settings.captions, trigger=settings.trigger))
    log(caption_report.text())
    report = save_dataset(captioned, Path(settings.out), settings.image_format, settings.trigger, settings.overwrite_edited_captions, workers=settings.workers)
    log(report.text())
    return report
