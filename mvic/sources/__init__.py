"""Where multi-view sets come from. One small module per source kind."""

from __future__ import annotations

from pathlib import Path

from ..datatypes import MultiViewSet, SkippedInput
from .common import require_dir

SOURCE_KINDS = ("auto", "folder", "mvimgnet", "video", "sample", "composites")


def discover_sets(
    kind: str, path: str | Path, cache_dir: Path | None = None
) -> tuple[list[MultiViewSet], list[SkippedInput], str]:
    """(sets with all their frames, skipped inputs, the kind actually used)."""
    from .composites import load_composite_sets, looks_like_composites
    from .folder import load_folder_sets
    from .mvimgnet import load_mvimgnet_sets, looks_like_mvimgnet
    from .video import VIDEO_SUFFIXES, load_video_sets

    if kind not in SOURCE_KINDS:
        raise ValueError(f"source kind {kind!r}: choose one of {', '.join(SOURCE_KINDS)}")
    if kind == "sample":
        from .sample import ensure_sample_data

        path, kind = ensure_sample_data(Path(path) if str(path).strip() else None), "mvimgnet"
    if kind == "auto":
        candidate = Path(path).expanduser()
        if candidate.is_file() and candidate.suffix.lower() in VIDEO_SUFFIXES:
            kind = "video"
        else:
            folder = require_dir(candidate, "input folder")
            if looks_like_mvimgnet(folder):
                kind = "mvimgnet"
            else:
                kind = "composites" if looks_like_composites(folder) else "folder"
    if kind == "composites":
        sets, skipped = load_composite_sets(path)
    elif kind == "folder":
        sets, skipped = load_folder_sets(path)
    elif kind == "mvimgnet":
        sets, skipped = load_mvimgnet_sets(path)
    else:
        sets, skipped = load_video_sets(path, cache_dir)
    return sets, skipped, kind
