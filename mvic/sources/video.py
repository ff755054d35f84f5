"""A video file (or a folder of them) -> one set per video, frames through PyAV.

ComfyUI already requires `av`, so no OpenCV. Frames are decoded once, evenly
thinned to at most `max_frames`, and kept as JPEGs in a cache folder keyed by the
video's size and mtime, so view selection and provenance work on real files.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..datatypes import Frame, MultiViewSet, SkippedInput
from ..files import safe_name
from .common import usable_names, display_path, list_images, natural_key

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
_DONE = ".complete"


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "mvic-video-frames"


def _video_key(path: Path) -> str:
    stat = path.stat()
    key = os.fsencode(path.resolve()) + f"|{stat.st_size}|{stat.st_mtime_ns}".encode()
    return hashlib.sha256(key).hexdigest()[:12]


def extract_frames(video: Path, cache_dir: Path, max_frames: int = 64) -> list[Path]:
    import av

    out_dir = cache_dir / f"{safe_name(video.stem)}-{_video_key(video)}"
    if (out_dir / _DONE).exists():
        return list_images(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as container:
        if not container.streams.video:
            raise ValueError(f"{video}: has no video stream")
        stream = container.streams.video[0]
        estimate = stream.frames or int(
            (float(stream.duration * stream.time_base) if stream.duration else 0) * float(stream.average_rate or 0)
        )
        step = max(1, -(-estimate // max_frames)) if estimate else 1
        kept = []
        for index, frame in enumerate(container.decode(stream)):
            if index % step:
                continue
            target = out_dir / f"frame_{index:06d}.jpg"
            frame.to_image().save(target, quality=95)
            kept.append(target)
    if not kept:
        raise ValueError(f"{video}: no frames could be decoded")
    if len(kept) > max_frames:  # the frame-count estimate was low
        keep = (
            {kept[round(i * (len(kept) - 1) / (max_frames - 1))] for i in range(max_frames)}
            if max_frames > 1
            else {kept[0]}
        )
        for path in kept:
            if path not in keep:
                path.unlink()
    (out_dir / _DONE).write_text("ok")
    return list_images(out_dir)


def load_video_sets(
    path: str | Path, cache_dir: Path | None = None, max_frames: int = 64
) -> tuple[list[MultiViewSet], list[SkippedInput]]:
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"video {display_path(path)} does not exist: give a video file or a folder of videos")
    bad_names: list[str] = []
    found = [path] if path.is_file() else (p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    videos = sorted(usable_names(found, bad_names), key=lambda p: natural_key(p.name))
    skipped = [SkippedInput("(video)", problem) for problem in bad_names]
    if not videos and not skipped:
        raise FileNotFoundError(f"{display_path(path)} holds no videos ({', '.join(VIDEO_SUFFIXES)})")
    cache_dir = cache_dir or default_cache_dir()
    sets = []
    for video in videos:
        try:
            frames = extract_frames(video, cache_dir, max_frames)
        except Exception as exc:  # av raises its own error types for broken files
            skipped.append(SkippedInput(video.name, f"could not decode the video: {exc}"))
            continue
        name = video.stem
        sets.append(
            MultiViewSet(name=name, category=name.replace("_", " "), frames=[Frame(p) for p in frames], source="video")
        )
    return sets, skipped
