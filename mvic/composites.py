"""Stage 2: chosen views -> one composite image per set (the CompositeGrid node)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .datatypes import Composite, Composites, MultiViewSet, MultiViewSets, PanelSource, SkippedInput
from .files import default_workers
from .images import ImageError, load_rgb, to_array
from .layout import CompositeLayout, compose, fit_panel
from .markers import DEFAULT_STYLE, MarkerStyle, markers_for


def fitted_panels(mv_set: MultiViewSet, layout: CompositeLayout, fit: str, pad_color=(0, 0, 0)) -> list[np.ndarray]:
    size = (layout.panel_width, layout.panel_height)
    # crop needs the short side >= panel; pad/stretch need the long side.
    panels = []
    for frame in mv_set.chosen_frames:
        image = load_rgb(frame.path, min_size=size, background=pad_color)
        panels.append(to_array(fit_panel(image, *size, mode=fit, pad_color=pad_color)))
    return panels


def build_composite(
    mv_set: MultiViewSet,
    layout: CompositeLayout,
    fit: str = "crop",
    pad_color=(0, 0, 0),
    style: MarkerStyle = DEFAULT_STYLE,
) -> Composite:
    if len(mv_set.chosen) != layout.count:
        raise ValueError(
            f"set {mv_set.name} has {len(mv_set.chosen)} chosen views but the layout "
            f"{layout.rows}x{layout.cols} has {layout.count} panels: set views per set to {layout.count}"
        )
    image = compose(fitted_panels(mv_set, layout, fit, pad_color), layout)
    angles = mv_set.angles or [None] * len(mv_set.chosen)
    panels = [
        PanelSource(
            set_name=mv_set.name,
            category=mv_set.category,
            frame_path=str(mv_set.frames[index].path),
            frame_index=index,
            pose=mv_set.frames[index].pose,
            angle=angle,
        )
        for index, angle in zip(mv_set.chosen, angles)
    ]
    return Composite(
        set_name=mv_set.name,
        category=mv_set.category,
        layout=layout,
        markers=markers_for(layout.rows, layout.cols, style),
        image=image,
        panels=panels,
        fit=fit,
    )


def build_composites(
    sets: MultiViewSets,
    layout: CompositeLayout,
    fit: str = "crop",
    pad_color=(0, 0, 0),
    style: MarkerStyle = DEFAULT_STYLE,
    workers: int | None = None,
    on_progress=None,
) -> Composites:
    """Composites for every set, in set order; a set whose frames fail to decode is skipped.

    Threads, not processes: PIL releases the GIL while decoding and resampling, and
    threads share the composites without pickling megabytes per set.
    """
    markers_for(layout.rows, layout.cols, style)  # a bad style fails before any decoding

    def one(mv_set):
        try:
            return build_composite(mv_set, layout, fit, pad_color, style)
        except ImageError as exc:
            return SkippedInput(mv_set.name, str(exc))

    workers = workers or default_workers()
    items, skipped = [], list(sets.skipped)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, result in enumerate(pool.map(one, sets.sets), start=1):
            (skipped if isinstance(result, SkippedInput) else items).append(result)
            if on_progress:
                on_progress(done, len(sets.sets))
    return Composites(items=items, skipped=skipped)
