"""`metadata.jsonl`: one record per composite, what it was made from and how it was captioned.

Hashes let a re-run tell what changed: the composite's pixels, each source frame
file, and the caption text we generated (so a person's edit is detectable).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..datatypes import Composite
from ..sources.common import safe_name
from .atomic import atomic_write_text

MANIFEST_NAME = "metadata.jsonl"


def composite_stem(composite: Composite) -> str:
    """Set name plus a short hash of (set, grid): stable when other sets come or go."""
    key = f"{composite.set_name}|{composite.layout.rows}x{composite.layout.cols}"
    return f"{safe_name(composite.set_name)}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def panel_records(composite: Composite, frame_hashes: dict[str, str]) -> list[dict]:
    out = []
    for panel in composite.panels:
        out.append(
            {
                "frame_path": panel.frame_path,
                "frame_index": panel.frame_index,
                "frame_sha256": frame_hashes.get(panel.frame_path, ""),
                "pose": None if panel.pose is None else {"qvec": list(panel.pose.qvec), "tvec": list(panel.pose.tvec)},
                "angle": None if panel.angle is None else {"azimuth_deg": panel.angle.azimuth_deg, "elevation_deg": panel.angle.elevation_deg},
            }
        )
    return out


def read_manifest(folder: Path) -> dict[str, ManifestRecord]:
    path = folder / MANIFEST_NAME
    records: dict[str, ManifestRecord] = {}
    if not path.is_file():
        return records
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            records[data["stem"]] = ManifestRecord(**data)
        except (ValueError, TypeError, KeyError) as exc:
            # A damaged line only costs us change detection for that composite.
            print(f"[mvic] {path}:{number}: ignoring unreadable manifest line ({exc})")
    return records


def write_manifest(folder: Path, records: list[ManifestRecord]) -> None:
    atomic_write_text(folder / MANIFEST_NAME, "".join(record.to_json() + "\n" for record in records))
