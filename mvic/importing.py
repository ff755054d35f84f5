"""Stage 2 for finished composites (source `composites`): each composite's caption says its
layout, the composite is split where its panels really meet (mvic.seams), the panels are
refit to multiples of 16 with the least change, and the composite is put together again.
Its caption travels word for word (backend "imported"): the template captioner and the
dataset saver keep it.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .datatypes import IMPORTED, Caption, Composite, Composites, MultiViewSet, MultiViewSets, PanelSource, SkippedInput
from .files import default_workers
from .images import ImageError, load_rgb, to_array
from .layout import ALIGN, FIT_MODES, CompositeLayout, compose, fit_panel
from .markers import DEFAULT_STYLE, LayoutMarkers, MarkerStyle, caption_layout, markers_for
from .seams import panel_boxes

log = logging.getLogger(__name__)

MAX_SHAPE_LOSS = 0.10  # a chosen panel size may crop or stretch away at most this share of a panel


@dataclass
class ImportedSplit:
    """One finished composite, split at its seams (the panels are views into the decoded composite)."""

    mv_set: MultiViewSet
    rows: int
    cols: int
    markers: LayoutMarkers
    panels: list[np.ndarray]
    seams_moved: int = 0  # boundaries found off the nominal lines


def is_imported(sets: MultiViewSets) -> bool:
    return any(s.source == "composites" for s in sets.sets)


def _grid_name(rows: int, cols: int) -> str:
    shape = " (stacked)" if cols == 1 < rows else " (side by side)" if rows == 1 < cols else ""
    return f"{rows}x{cols}{shape}"


def _grid_text(grids) -> str:
    return " or ".join(_grid_name(*g) for g in grids)


def _seamed(image: np.ndarray, grids) -> list[tuple[int, int]]:
    """The grids whose every boundary shows a seam."""
    return [g for g in grids if all(cut.found for cut in panel_boxes(image, *g)[1])]


def resolve_grid(
    image: np.ndarray, grids: tuple[tuple[int, int], ...], grid: tuple[int, int] | None
) -> tuple[int, int]:
    """The caption's grid. Markers that fit several grids (e.g. [SCENE-{n}]: 3x1 or 1x3) are told
    apart by where the seams are; a grid asked for must fit the markers and not contradict the seams."""
    seamed = _seamed(image, grids) if len(grids) > 1 else list(grids)
    if grid is not None:
        grid = tuple(grid)
        if grid not in grids:
            raise ValueError(
                f"its caption's markers make a {_grid_text(grids)} layout, not {grid[0]}x{grid[1]}: "
                f"set the grid (rows x cols) to {_grid_text(grids)}"
            )
        if len(seamed) == 1 and seamed[0] != grid:
            raise ValueError(
                f"its panels meet as {_grid_name(*seamed[0])}, not {_grid_name(*grid)}: "
                f"set the grid (rows x cols) to {seamed[0][0]}x{seamed[0][1]}"
            )
        return grid
    if len(seamed) == 1:
        return seamed[0]
    raise ValueError(
        f"its caption's markers fit {_grid_text(grids)} and the seams do not tell which: give the grid (rows x cols)"
    )


def split_composite(mv_set: MultiViewSet, grid: tuple[int, int] | None, style: MarkerStyle) -> ImportedSplit:
    path = mv_set.frames[0].path
    try:
        layout = caption_layout(mv_set.caption or "", style)
    except ValueError as exc:
        raise ValueError(f"its caption {exc}") from None
    image = to_array(load_rgb(path))
    rows, cols = resolve_grid(image, layout.grids, grid)
    boxes, cuts = panel_boxes(image, rows, cols)
    if any(b - t < ALIGN or r - l < ALIGN for t, b, l, r in boxes):
        raise ValueError(
            f"a {image.shape[1]}x{image.shape[0]} image makes {rows}x{cols} panels smaller than {ALIGN} pixels"
        )
    panels = [image[t:b, l:r] for t, b, l, r in boxes]
    return ImportedSplit(mv_set, rows, cols, layout.markers, panels, sum(c.position != c.nominal for c in cuts))


def least_refit_size(splits: list[ImportedSplit]) -> tuple[int, int]:
    """The panels' median width and height, each rounded down to a multiple of 16: most panels then
    lose only their last few pixels; only panels far from the median are resampled."""
    widths = [p.shape[1] for s in splits for p in s.panels]
    heights = [p.shape[0] for s in splits for p in s.panels]
    return (max(ALIGN, int(np.median(widths)) // ALIGN * ALIGN), max(ALIGN, int(np.median(heights)) // ALIGN * ALIGN))


def refit_panel(panel: np.ndarray, width: int, height: int, fit: str = "crop", pad_color=(0, 0, 0)) -> np.ndarray:
    """A panel up to 15 pixels too large on a side is trimmed around its centre (pixels kept as
    they are); any other is fitted (`fit`: crop, pad or stretch)."""
    from PIL import Image

    h, w = panel.shape[:2]
    if width <= w < width + ALIGN and height <= h < height + ALIGN:
        top, left = (h - height) // 2, (w - width) // 2
        return np.ascontiguousarray(panel[top : top + height, left : left + width])
    return to_array(fit_panel(Image.fromarray(panel), width, height, fit, pad_color))


def check_panel_shape(splits: list[ImportedSplit], width: int, height: int, fit: str) -> None:
    """Refuse a panel size whose shape would crop away (or stretch) much of every panel."""
    if fit == "pad":
        return
    have_w = float(np.median([p.shape[1] for s in splits for p in s.panels]))
    have_h = float(np.median([p.shape[0] for s in splits for p in s.panels]))
    ratio = (width / height) / (have_w / have_h)
    loss = 1.0 - min(ratio, 1.0 / ratio)
    if loss > MAX_SHAPE_LOSS:
        keep_w, keep_h = least_refit_size(splits)
        verb = "crop away" if fit == "crop" else "stretch"
        raise ValueError(
            f"the imported panels are about {have_w:.0f}x{have_h:.0f}; {width}x{height} panels would {verb} "
            f"{loss:.0%} of each: set the panel size to 0 to keep their own ({keep_w}x{keep_h}), "
            "choose a size of the same shape, or fit 'pad'"
        )


def skipped_summary(skipped: list[SkippedInput], limit: int = 4) -> str:
    """One line per distinct reason, with the files it applies to (a whole folder often fails alike)."""
    by_reason: dict[str, list[str]] = {}
    for item in skipped:
        by_reason.setdefault(item.reason, []).append(item.name)
    lines = []
    for reason, names in by_reason.items():
        shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
        lines.append(f"{shown}: {reason}")
    return "\n".join(lines)


def _split_all(
    sets: MultiViewSets, grid, style, workers, on_progress
) -> tuple[list[ImportedSplit], list[SkippedInput]]:
    def one(mv_set):
        try:
            return split_composite(mv_set, grid, style)
        except (ImageError, ValueError) as exc:
            return SkippedInput(mv_set.frames[0].path.name if mv_set.frames else mv_set.name, str(exc))

    splits, skipped = [], list(sets.skipped)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        for done, result in enumerate(pool.map(one, sets.sets), start=1):
            (skipped if isinstance(result, SkippedInput) else splits).append(result)
            if on_progress:
                on_progress(done, len(sets.sets))
    return splits, skipped


def _one_layout(splits: list[ImportedSplit], skipped: list[SkippedInput]) -> list[ImportedSplit]:
    """A dataset has one layout: keep the most common grid, report the others."""
    if not splits:
        return splits
    (rows, cols), _ = Counter((s.rows, s.cols) for s in splits).most_common(1)[0]
    for s in splits:
        if (s.rows, s.cols) != (rows, cols):
            skipped.append(
                SkippedInput(
                    s.mv_set.frames[0].path.name,
                    f"is {s.rows}x{s.cols}, the others are {rows}x{cols}: "
                    "one layout per dataset (import it into its own dataset)",
                )
            )
    return [s for s in splits if (s.rows, s.cols) == (rows, cols)]


def _composite(split: ImportedSplit, layout: CompositeLayout, fit: str, pad_color) -> Composite:
    panels = [refit_panel(p, layout.panel_width, layout.panel_height, fit, pad_color) for p in split.panels]
    path = str(split.mv_set.frames[0].path)
    return Composite(
        set_name=split.mv_set.name,
        category=split.mv_set.category,
        layout=layout,
        markers=split.markers,
        image=compose(panels, layout),
        fit=fit,
        panels=[PanelSource(split.mv_set.name, split.mv_set.category, path, index) for index in range(layout.count)],
        caption=Caption(text=split.mv_set.caption or "", backend=IMPORTED),
    )


def build_imported_composites(
    sets: MultiViewSets,
    grid: tuple[int, int] | None = None,
    panel: tuple[int, int] = (0, 0),
    fit: str = "crop",
    pad_color=(0, 0, 0),
    style: MarkerStyle = DEFAULT_STYLE,
    divider_width: int = 0,
    divider_color=(255, 255, 255),
    workers: int | None = None,
    on_progress=None,
) -> Composites:
    """Finished composites -> Composites with their own captions.

    `grid` (rows, cols): None reads it from the captions. `panel` (width, height): 0 on a side
    keeps the panels' own size there (the least refit to a multiple of 16)."""
    # 1. inputs
    if fit not in FIT_MODES:
        raise ValueError(f"fit mode {fit!r}: choose one of {', '.join(FIT_MODES)}")
    if grid is not None:
        markers_for(*grid, style)  # a bad grid or marker style fails before any decoding
    # 2. caption -> layout, split at the seams
    splits, skipped = _split_all(sets, grid, style, workers, on_progress)
    splits = _one_layout(splits, skipped)
    if not splits:
        return Composites(items=[], skipped=skipped)
    # 3. one panel size for the dataset
    keep_w, keep_h = least_refit_size(splits)
    width, height = panel[0] or keep_w, panel[1] or keep_h
    if panel[0] or panel[1]:
        check_panel_shape(splits, width, height, fit)
    layout = CompositeLayout(splits[0].rows, splits[0].cols, width, height, divider_width, tuple(divider_color))
    # 4. refit and re-compose
    items = [_composite(s, layout, fit, pad_color) for s in splits]
    moved = sum(s.seams_moved for s in splits)
    note = (
        f"imported {len(items)} composite(s) as {layout.rows}x{layout.cols}, panels {width}x{height}; "
        f"{moved} seam(s) found off the exact fractions"
    )
    log.info(note)
    return Composites(items=items, skipped=skipped, notes=[note])
