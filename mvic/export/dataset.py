"""Write composites as an IC-LoRA training set that sd-scripts and ai-toolkit read unmodified.

Layout of the output folder (trainers read only images/, so nothing else is trained on):
    images/<stem>.png|jpg + .txt  one pair per composite (stem = set name + short hash)
    metadata.jsonl                the manifest (hashes, layout, markers, provenance)
    dataset.toml                  sd-scripts --dataset_config
    ai_toolkit.yaml               ai-toolkit config
    contact_sheet.png             all composites at a glance
    removed/                      pairs whose set is no longer in the run (moved, never deleted)

Re-runs rewrite only what changed, and never overwrite a caption a person edited
unless `overwrite_edited_captions` is set.
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..captions.template import template_caption
from ..composites import default_workers
from ..datatypes import Caption, Composite, Composites, SkippedInput
from ..images import array_sha256, file_sha256
from ..sources.common import safe_name
from .atomic import atomic_write_bytes, atomic_write_text
from .contact_sheet import contact_sheet_png
from .manifest import ManifestRecord, composite_stem, panel_records, read_manifest, text_sha256, write_manifest
from .trainer_configs import AI_TOOLKIT_YAML, DEFAULT_BASE_MODEL, SD_SCRIPTS_TOML, ai_toolkit_yaml, sd_scripts_dataset_toml

IMAGE_FORMATS = ("png", "jpg")
CONTACT_SHEET = "contact_sheet.png"
IMAGES_DIR = "images"
REMOVED_DIR = "removed"


@dataclass
class ExportReport:
    folder: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    captions_kept: list[str] = field(default_factory=list)  # a person's edit, left alone
    moved_to_removed: list[str] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)

    def text(self) -> str:
        lines = [
            f"dataset: {self.folder}",
            f"{len(self.written)} composite(s) written, {len(self.unchanged)} unchanged",
        ]
        if self.captions_kept:
            lines.append(f"kept {len(self.captions_kept)} edited caption(s): {', '.join(self.captions_kept)}")
        if self.moved_to_removed:
            lines.append(f"moved to {REMOVED_DIR}/ (set no longer in the run): {', '.join(self.moved_to_removed)}")
        lines += [f"skipped {item.name}: {item.reason}" for item in self.skipped]
        return "\n".join(lines)


def encode_image(array, image_format: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    if image_format == "png":
        # zlib level 1 with the RLE strategy: ~4x faster than PNG's default, and for
        # photos about as small (measured in benchmarks/bench_composites.py).
        Image.fromarray(array).save(buffer, format="PNG", compress_level=1, compress_type=3)
    else:
        Image.fromarray(array).save(buffer, format="JPEG", quality=95, subsampling=0)
    return buffer.getvalue()


def _frame_hashes(composites: list[Composite]) -> dict[str, str]:
    paths = {panel.frame_path for c in composites for panel in c.panels}
    return {path: file_sha256(path) for path in sorted(paths) if os.path.isfile(path)}


def save_dataset(
    composites: Composites,
    folder: str | Path,
    image_format: str = "png",
    trigger: str = "",
    overwrite_edited_captions: bool = False,
    num_repeats: int = 1,
    base_model: str = DEFAULT_BASE_MODEL,
    name: str = "",
    workers: int | None = None,
) -> ExportReport:
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format {image_format!r}: choose one of {', '.join(IMAGE_FORMATS)}")
    items = composites.items
    if not items:
        raise ValueError("no composites to save: every set was skipped:\n" + composites.report())
    sizes = {(c.layout.width, c.layout.height) for c in items}
    if len(sizes) > 1:
        raise ValueError(f"composites have different sizes {sorted(sizes)}: use one layout per dataset")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    report = ExportReport(folder=folder.resolve(), skipped=list(composites.skipped))
    previous = read_manifest(folder)
    frame_hashes = _frame_hashes(items)
    unique: dict[str, Composite] = {}
    for composite in items:
        stem = composite_stem(composite)
        if stem in unique:
            report.skipped.append(SkippedInput(composite.set_name, f"duplicate set name (stem {stem}); kept the first"))
        else:
            unique[stem] = composite
    pixel_hashes = {stem: array_sha256(c.image) for stem, c in unique.items()}
    stale = [stem for stem in unique if not _image_unchanged(folder, previous.get(stem), pixel_hashes[stem], image_format)]
    # Encoding dominates export time; PIL's encoders release the GIL, so threads scale.
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        encoded = dict(zip(stale, pool.map(lambda stem: encode_image(unique[stem].image, image_format), stale)))
    records = [
        _write_one(c, stem, folder, image_format, trigger, overwrite_edited_captions, previous.get(stem), frame_hashes, pixel_hashes[stem], encoded.get(stem), report)
        for stem, c in unique.items()
    ]
    seen = set(unique)
    _move_dropped(folder, previous, seen, report)
    write_manifest(folder, records)
    width, height = sizes.pop()
    atomic_write_text(folder / SD_SCRIPTS_TOML, sd_scripts_dataset_toml(folder / IMAGES_DIR, width, height, num_repeats))
    captions = [(folder / r.caption_file).read_text(encoding="utf-8") for r in records]
    run_name = safe_name(name or folder.name, "iclora")
    atomic_write_text(folder / AI_TOOLKIT_YAML, ai_toolkit_yaml(folder / IMAGES_DIR, run_name, base_model, captions[:2]))
    atomic_write_bytes(folder / CONTACT_SHEET, contact_sheet_png([c.image for c in unique.values()], [r.stem for r in records]))
    return report


def _files(stem: str, image_format: str) -> tuple[str, str]:
    """Image and caption paths, relative to the dataset folder (as the manifest stores them)."""
    return f"{IMAGES_DIR}/{stem}.{image_format}", f"{IMAGES_DIR}/{stem}.txt"


def _image_unchanged(folder: Path, old: ManifestRecord | None, pixels_hash: str, image_format: str) -> bool:
    if old is None:
        return False
    image_file = _files(old.stem, image_format)[0]
    return old.composite_sha256 == pixels_hash and old.image_file == image_file and (folder / image_file).is_file()


def _write_one(composite, stem, folder, image_format, trigger, overwrite_edited, old, frame_hashes, pixels_hash, encoded, report) -> ManifestRecord:
    image_file, caption_file = _files(stem, image_format)
    image_path, caption_path = folder / image_file, folder / caption_file
    unchanged_image = encoded is None
    if not unchanged_image:
        atomic_write_bytes(image_path, encoded)
    if old is not None and old.image_file != image_file:
        (folder / old.image_file).unlink(missing_ok=True)  # format switched png <-> jpg

    caption: Caption = composite.caption or template_caption(composite, trigger)
    generated_hash = text_sha256(caption.text)
    provenance = {"backend": caption.backend, "model": caption.model, "prompt_version": caption.prompt_version, "edited_by_person": False}
    caption_changed = True
    if caption_path.is_file():
        on_disk = text_sha256(caption_path.read_text(encoding="utf-8"))
        edited = old is None or on_disk != old.caption_sha256
        if edited and on_disk != generated_hash and not overwrite_edited:
            report.captions_kept.append(caption_file)
            provenance = {**(old.caption if old else {}), "edited_by_person": True}
            generated_hash = old.caption_sha256 if old else generated_hash
            caption_changed = False
        elif on_disk == generated_hash:
            caption_changed = False
    if caption_changed:
        atomic_write_text(caption_path, caption.text)
    (report.written if (caption_changed or not unchanged_image) else report.unchanged).append(stem)
    return ManifestRecord(
        stem=stem,
        image_file=image_file,
        caption_file=caption_file,
        composite_sha256=pixels_hash,
        caption_sha256=generated_hash,
        caption=provenance,
        layout=composite.layout.describe(),
        markers=composite.markers.as_dict(),
        fit=composite.fit,
        set_name=composite.set_name,
        category=composite.category,
        panels=panel_records(composite, frame_hashes),
    )


def _move_dropped(folder: Path, previous: dict[str, ManifestRecord], seen: set[str], report: ExportReport) -> None:
    for stem, old in previous.items():
        if stem in seen:
            continue
        for name in (old.image_file, old.caption_file):
            source = folder / name
            if source.is_file():
                target = folder / REMOVED_DIR / Path(name).name
                target.parent.mkdir(exist_ok=True)
                os.replace(source, target)
        report.moved_to_removed.append(stem)
