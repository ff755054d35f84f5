"""Stage 1: find the sets and choose each set's views (the MultiViewLoader node)."""

from __future__ import annotations

from pathlib import Path

from .datatypes import MultiViewSets, SkippedInput
from .sources import discover_sets
from .sources.common import display_path
from .views import select_views_by_pose, select_views_evenly, usable_frames, view_angles

SELECTION_METHODS = ("auto", "pose", "frame_order")


def load_multiview_sets(
    kind: str,
    path: str | Path,
    views: int = 4,
    selection: str = "auto",
    max_sets: int = 0,
    reject_blurred: bool = False,
    reject_duplicates: bool = False,
    cache_dir: Path | None = None,
) -> MultiViewSets:
    """Find sets under `path` and pick `views` frames of each (finished composites: each
    composite is a set of one frame with its caption; `views` and `selection` do not apply).

    A set that cannot give `views` usable frames is skipped and reported; the
    others go on. `max_sets` = 0 means all.
    """
    if selection not in SELECTION_METHODS:
        raise ValueError(f"selection {selection!r}: choose one of {', '.join(SELECTION_METHODS)}")
    if views < 1:
        raise ValueError(f"views = {views}: need at least 1 view per set")
    sets, skipped, used_kind = discover_sets(kind, path, cache_dir)
    if used_kind == "composites":  # finished composites: their captions say the panels, nothing to pick
        return MultiViewSets(sets=sets[: max_sets or None], skipped=skipped, root=str(path))
    kept = []
    for mv_set in sets:
        if max_sets and len(kept) >= max_sets:
            break
        try:
            usable = usable_frames([f.path for f in mv_set.frames], reject_blurred, reject_duplicates)
        except ValueError as exc:  # an unreadable frame while scoring blur/duplicates
            skipped.append(SkippedInput(mv_set.name, str(exc)))
            continue
        if len(usable) < views:
            reason = f"has {len(usable)} usable frame(s), fewer than the {views} views asked for"
            skipped.append(SkippedInput(mv_set.name, "; ".join([reason, *mv_set.warnings])))
            continue
        posed = [i for i in usable if mv_set.frames[i].pose is not None]
        if selection != "frame_order" and len(posed) >= views:
            poses = [mv_set.frames[i].pose for i in posed]
            picked = select_views_by_pose(poses, views)
            mv_set.chosen = [posed[i] for i in picked]
            mv_set.angles = view_angles(poses, picked)
            mv_set.selection = "pose"
        elif selection == "pose":
            skipped.append(
                SkippedInput(mv_set.name, f"selection 'pose' needs {views} posed frames, it has {len(posed)}")
            )
            continue
        else:
            mv_set.chosen = [usable[i] for i in select_views_evenly(len(usable), views)]
            mv_set.selection = "frame_order"
        kept.append(mv_set)
    return MultiViewSets(sets=kept, skipped=skipped, root="embedded sample" if kind == "sample" else display_path(path))
