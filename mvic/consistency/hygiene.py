"""Dataset hygiene: drop composites whose chosen views do not agree (bad registration, a moving
object, frames of different things in one folder), and say so per set."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..datatypes import Composite, Composites, SkippedInput
from .score import DEFAULT_SETTINGS, score_composite
from .types import ConsistencyScore, ConsistencySettings


def score_dataset_composite(composite: Composite, settings: ConsistencySettings = DEFAULT_SETTINGS) -> ConsistencyScore:
    """A composite as the composite stage made it: its layout and, when known, its cameras' poses."""
    poses = [panel.pose for panel in composite.panels]
    layout = composite.layout
    known = poses if any(pose is not None for pose in poses) and len(poses) == layout.count else None
    return score_composite(composite.image, layout.rows, layout.cols, layout.divider_width, settings, known)


def filter_composites(
    composites: Composites,
    min_consistency: float,
    settings: ConsistencySettings = DEFAULT_SETTINGS,
    workers: int = 2,
    on_progress=None,
) -> tuple[Composites, list[str]]:
    """Composites scoring at least `min_consistency` (0 keeps all, unscored), and one report line per set.
    OpenCV releases the GIL while it works, so threads score several composites at once."""
    if not 0.0 <= min_consistency <= 1.0:
        raise ValueError(f"min_consistency = {min_consistency}: use 0 (keep every set) up to 1")
    if min_consistency == 0.0 or not composites.items:
        return composites, []
    kept, skipped, lines = [], list(composites.skipped), []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        scores = pool.map(lambda c: score_dataset_composite(c, settings), composites.items)
        for done, (composite, score) in enumerate(zip(composites.items, scores), start=1):
            flags = f" ({', '.join(score.flags)})" if score.flags else ""
            if score.consistency >= min_consistency:
                kept.append(composite)
                lines.append(f"consistency {composite.set_name}: {score.consistency:.2f}{flags}, kept")
            else:
                reason = f"views do not agree: consistency {score.consistency:.2f} < {min_consistency:g}{flags}"
                skipped.append(SkippedInput(composite.set_name, reason))
                lines.append(f"consistency {composite.set_name}: {score.consistency:.2f}{flags}, dropped")
            if on_progress:
                on_progress(done, len(composites.items))
    return Composites(items=kept, skipped=skipped), lines
