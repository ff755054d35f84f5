"""`metadata.jsonl`: one record per composite, what it was made from and how it was captioned.

Hashes let a re-run tell what changed: the composite's pixels, the image file we wrote,
each source frame file, and the caption text we generated (so a person's edit is detectable).

A dataset folder may come from someone else: a record may only name files in the
folder's own images/ (`images/<stem>.png|jpg|txt`, no links leaving it). Other records
are ignored with a warning, so neither the saver nor the trainer reads, moves or
deletes anything outside the folder because a manifest said so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..datatypes import Composite
from ..files import safe_name
from ..paths import is_inside
from ..sources.common import display_path
from .folder import IMAGES_DIR, MANIFEST_NAME

logger = logging.getLogger(__name__)

_STEM_RE = re.compile(r"^[^/\\\x00]{1,200}$")


def composite_stem(composite: Composite) -> str:
    """Set name plus a short hash of (set, grid): stable when other sets come or go."""
    key = f"{composite.set_name}|{composite.layout.rows}x{composite.layout.cols}"
    return f"{safe_name(composite.set_name)}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


@dataclass
class ManifestRecord:
    stem: str
    image_file: str
    caption_file: str
    composite_sha256: str
    caption_sha256: str  # of the caption text this pipeline generated (not of a person's edit)
    caption: dict  # backend, model, prompt_version, edited_by_person
    layout: dict
    markers: dict
    fit: str
    set_name: str
    category: str
    panels: list[dict] = field(default_factory=list)
    image_sha256: str = ""  # of the image file's bytes as written ("" in manifests of older versions)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def panel_records(composite: Composite, frame_hashes: dict[str, str]) -> list[dict]:
    out = []
    for panel in composite.panels:
        out.append(
            {
                "frame_path": display_path(panel.frame_path),
                "frame_index": panel.frame_index,
                "frame_sha256": frame_hashes.get(panel.frame_path, ""),
                "pose": None if panel.pose is None else {"qvec": list(panel.pose.qvec), "tvec": list(panel.pose.tvec)},
                "angle": None
                if panel.angle is None
                else {"azimuth_deg": panel.angle.azimuth_deg, "elevation_deg": panel.angle.elevation_deg},
            }
        )
    return out


def record_problem(folder: Path, record: ManifestRecord) -> str:
    """Why `record` may not be used ("" when it names only files of this folder's images/)."""
    stem = record.stem
    if not isinstance(stem, str) or not _STEM_RE.match(stem) or stem in (".", "..") or stem.startswith("."):
        return f"stem {str(stem)[:80]!r} is not a file name"
    for name, expected in (
        (record.image_file, (f"{IMAGES_DIR}/{stem}.png", f"{IMAGES_DIR}/{stem}.jpg")),
        (record.caption_file, (f"{IMAGES_DIR}/{stem}.txt",)),
    ):
        if name not in expected:
            return f"it names {str(name)[:200]!r}; a record may only name {' or '.join(expected)}"
        if not is_inside(folder / name, folder):
            return f"{name} is a link leading out of the dataset folder"
    return ""


def read_manifest(folder: Path, problems: list[str] | None = None) -> dict[str, ManifestRecord]:
    """The folder's records by stem. Unreadable lines and records naming anything but this
    folder's own images/ files are left out (and described in `problems` when given)."""
    path = folder / MANIFEST_NAME
    records: dict[str, ManifestRecord] = {}
    if not path.is_file():
        return records
    if not is_inside(path, folder):
        _problem(problems, f"{path} is a link leading out of the dataset folder; ignored")
        return records
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = ManifestRecord(**json.loads(line))
        except (ValueError, TypeError, KeyError) as exc:
            # A damaged line only costs us change detection for that composite.
            _problem(problems, f"{path}:{number}: ignoring an unreadable manifest line ({str(exc)[:200]})")
            continue
        reason = record_problem(folder, record)
        if reason:
            _problem(problems, f"{path}:{number}: ignoring a record: {reason}")
        else:
            records[record.stem] = record
    return records


def _problem(problems: list[str] | None, text: str) -> None:
    logger.warning(text)
    if problems is not None:
        problems.append(text)


def manifest_text(records: list[ManifestRecord]) -> str:
    return "".join(record.to_json() + "\n" for record in records)
