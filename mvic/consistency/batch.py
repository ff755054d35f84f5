"""Score many composites: a folder of images (grid given), a dataset folder (layout and poses from
its manifest), or one image file; write the JSON list and the annotated contact sheet."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..datatypes import CameraPose
from ..export.folder import MANIFEST_NAME
from ..export.manifest import read_manifest
from ..files import atomic_write_bytes, atomic_write_text
from ..images import IMAGE_SUFFIXES, ImageError, load_rgb, to_array
from ..layout import split_boxes
from .score import DEFAULT_SETTINGS, score_composite
from .sheet import annotate, scores_sheet_png
from .types import ConsistencyScore, ConsistencySettings

log = logging.getLogger(__name__)


@dataclass
class CompositeJob:
    path: Path
    name: str  # as reported: relative to the scored folder
    rows: int
    cols: int
    divider_width: int = 0
    poses: list | None = None  # CameraPose or None per panel, from a dataset manifest


@dataclass
class ScoredComposite:
    job: CompositeJob
    score: ConsistencyScore | None = None
    error: str = ""
    annotated: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict:
        head = {"file": self.job.name, "grid": f"{self.job.rows}x{self.job.cols}"}
        return {**head, "error": self.error} if self.score is None else {**head, **self.score.to_dict()}


def parse_grid(text: str) -> tuple[int, int]:
    rows, sep, cols = text.lower().partition("x")
    if not sep or not rows.strip().isdigit() or not cols.strip().isdigit() or int(rows) < 1 or int(cols) < 1:
        raise ValueError(f"--grid {text!r}: write ROWSxCOLS, e.g. 2x2 or 1x3")
    return int(rows), int(cols)


def _manifest_jobs(folder: Path, grid: tuple[int, int] | None) -> list[CompositeJob]:
    jobs = []
    for record in read_manifest(folder).values():
        poses = [
            CameraPose(tuple(p["pose"]["qvec"]), tuple(p["pose"]["tvec"])) if p.get("pose") else None
            for p in record.panels
        ]
        rows, cols = grid or (record.layout["rows"], record.layout["cols"])
        divider = 0 if grid else record.layout.get("divider_width", 0)
        usable = any(poses) and len(poses) == rows * cols
        poses = poses if usable else None
        jobs.append(CompositeJob(folder / record.image_file, record.image_file, rows, cols, divider, poses))
    return jobs


def find_jobs(
    path: str | Path, grid: tuple[int, int] | None = None, divider_width: int = 0, exclude: tuple[Path, ...] = ()
) -> list[CompositeJob]:
    """What to score under `path`. A dataset folder's manifest lists its composites with their layout
    and camera poses (`grid` overrides the layout); plain folders and files need `grid`. Files in
    `exclude` (our own outputs) are never scored."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"{path} does not exist: give a folder of composites, a dataset folder or an image")
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        jobs = _manifest_jobs(path, grid)
        if jobs:
            return jobs
    if grid is None:
        raise ValueError(
            f"{path} has no dataset manifest ({MANIFEST_NAME}) to take the layout from: give --grid ROWSxCOLS"
        )
    skip = {p.resolve() for p in exclude}
    found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    found = [p for p in found if p.is_file()]
    files = [f for f in found if f.resolve() not in skip]
    if not files:
        raise ValueError(f"{path} holds no {'/'.join(IMAGE_SUFFIXES)} images to score")
    base = path.parent if path.is_file() else path
    return [CompositeJob(f, f.relative_to(base).as_posix(), grid[0], grid[1], divider_width) for f in files]


def score_job(
    job: CompositeJob, settings: ConsistencySettings = DEFAULT_SETTINGS, learned=None, note: str = ""
) -> ScoredComposite:
    """One composite; an unreadable or ill-fitting image becomes an entry with `error`, not a crash."""
    try:
        image = to_array(load_rgb(job.path))
        score = score_composite(image, job.rows, job.cols, job.divider_width, settings, job.poses, learned)
    except (ImageError, ValueError) as exc:
        log.info("%s: %s", job.name, exc)
        return ScoredComposite(job, error=str(exc))
    if learned is None:
        score.learned_note = note
    boxes = split_boxes(image.shape[0], image.shape[1], job.rows, job.cols)
    return ScoredComposite(job, score, annotated=_thumbnail(annotate(image, score, boxes)))


def _thumbnail(image: np.ndarray, width: int = 768) -> np.ndarray:
    from PIL import Image

    if image.shape[1] <= width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))


def write_outputs(results: list[ScoredComposite], json_path: Path, sheet_path: Path | None) -> None:
    """The JSON list (one object per composite) and the annotated contact sheet, each written atomically."""
    atomic_write_text(json_path, json.dumps([r.to_dict() for r in results], indent=1) + "\n")
    if sheet_path is not None:
        shown = [r for r in results if r.annotated is not None]
        labels = [f"{r.score.consistency:.2f} {r.job.name}" for r in shown]
        atomic_write_bytes(sheet_path, scores_sheet_png([r.annotated for r in shown], labels))
