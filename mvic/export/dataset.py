"""Write composites as an IC-LoRA training set that sd-scripts and ai-toolkit read unmodified.

Layout of the output folder (trainers read only images/, so nothing else is trained on):
    images/<stem>.png|jpg + .txt  one pair per composite (stem = set name + short hash)
    metadata.jsonl                the manifest (hashes, layout, markers, provenance)
    dataset.toml                  sd-scripts --dataset_config
    ai_toolkit.yaml               ai-toolkit config
    contact_sheet.png             all composites at a glance
    removed/                      pairs whose set is no longer in the run (moved, never deleted)
    replaced/                     dated copies of what a run replaced that it had not written
                                  (an edited caption with overwrite_edited_captions, a changed image)

One build at a time per folder, and each build is a transaction (transaction.py): a crash,
a kill or a full disk leaves the previous dataset or the new one, never a mix.
Re-runs rewrite only what changed: every file is checked against the manifest's hashes.
A caption that differs from what the last completed run wrote was edited by a person and is
kept, unless `overwrite_edited_captions` is set (then it is kept in replaced/).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from ..captions.template import template_caption
from ..captions.text import with_trigger
from ..datatypes import Caption, Composite, Composites, SkippedInput
from ..files import default_workers, safe_name
from ..images import array_sha256, file_sha256
from ..sources.common import display_path, is_utf8
from .contact_sheet import contact_sheet_png
from .folder import (
    AI_TOOLKIT_YAML,
    CONTACT_SHEET,
    IMAGES_DIR,
    MANIFEST_NAME,
    REMOVED_DIR,
    REPLACED_DIR,
    SD_SCRIPTS_TOML,
)
from .manifest import ManifestRecord, composite_stem, manifest_text, panel_records, read_manifest
from .trainer_configs import DEFAULT_BASE_MODEL, ai_toolkit_yaml, sd_scripts_dataset_toml
from .transaction import BuildLock, Transaction, describe_owner, real_subdir, recover

IMAGE_FORMATS = ("png", "jpg")
MAX_CAPTION_CHARS = 8000  # far beyond FLUX's 512 T5 tokens; a caption longer than this is a fault
MAX_TRIGGER_CHARS = 200
_CONTROL = {c: None for c in [*range(0, 9), *range(11, 32), *range(127, 160)]}


@dataclass
class ExportReport:
    folder: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    captions_kept: list[str] = field(default_factory=list)  # a person's edit, left alone
    replaced: list[str] = field(default_factory=list)  # "edited caption images/x.txt (kept as replaced/x.<time>.txt)"
    moved_to_removed: list[str] = field(default_factory=list)
    skipped: list[SkippedInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # recovery, ignored manifest lines, shortened captions

    def text(self) -> str:
        lines = [
            f"dataset: {display_path(self.folder)}",
            f"{len(self.written)} composite(s) written, {len(self.unchanged)} unchanged",
        ]
        if self.captions_kept:
            lines.append(f"kept {len(self.captions_kept)} edited caption(s): {', '.join(self.captions_kept)}")
        lines += [f"replaced {entry}" for entry in self.replaced]
        if self.moved_to_removed:
            lines.append(f"moved to {REMOVED_DIR}/ (set no longer in the run): {', '.join(self.moved_to_removed)}")
        lines += self.notes
        lines += [f"skipped {item.name}: {item.reason}" for item in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class ExportOptions:
    image_format: str = "png"
    trigger: str = ""
    overwrite_edited_captions: bool = False
    num_repeats: int = 1
    base_model: str = DEFAULT_BASE_MODEL
    name: str = ""
    workers: int | None = None
    stamp: str = field(default_factory=lambda: datetime.now().strftime("%Y%m%d-%H%M%S"))


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
    lock: BuildLock | None = None,
    tool: str = "a dataset build",
) -> ExportReport:
    """Write the dataset into `folder`. `lock`: a BuildLock the caller already holds on this
    folder (a whole build); without one, the folder is locked for the export (stops at once
    with DatasetBusy when another build holds it)."""
    options = ExportOptions(image_format, trigger, overwrite_edited_captions, num_repeats, base_model, name, workers)
    items = check_inputs(composites, folder, options)
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    own_lock = lock is None
    lock = lock or BuildLock(folder, tool).held()
    try:
        report = ExportReport(folder=folder.resolve(), skipped=list(composites.skipped))
        if lock.previous_owner:
            owner = describe_owner(lock.previous_owner)
            report.notes.append(f"took over the lock of a build that ended without releasing it: {owner}")
        recovered = recover(folder)  # 1. finish or discard what a killed build left
        report.notes += [recovered] if recovered else []
        real_subdir(folder, IMAGES_DIR)
        previous = read_manifest(folder, report.notes)  # 2. what the last completed build wrote
        export = _Export(Transaction(folder), options, previous, report)
        try:
            export.transaction.begin()  # 3. the journal, first
            export.stage_all(items)  # 4. every new file, in full, outside the dataset's own places
            export.transaction.seal()  # 5. the commit point
        except BaseException as exc:
            export.transaction.abandon()
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OSError(
                    exc.errno,
                    f"no space left on the device while writing {display_path(folder)}: "
                    "nothing in the dataset was changed; free some space and run again",
                ) from exc
            raise
        export.transaction.apply()  # 6. renames and moves; manifest and dataset.toml last
        return report
    finally:
        if own_lock:
            lock.release()


def check_inputs(composites: Composites, folder: str | Path, options: ExportOptions) -> list[Composite]:
    check_destination(folder, options)
    items = composites.items
    if not items:
        raise ValueError("no composites to save: every set was skipped:\n" + composites.report())
    sizes = {(c.layout.width, c.layout.height) for c in items}
    if len(sizes) > 1:
        raise ValueError(f"composites have different sizes {sorted(sizes)}: use one layout per dataset")
    return items


def check_destination(folder: str | Path, options: ExportOptions) -> None:
    """What can be checked before any work: the options and the folder's name."""
    if options.image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format {options.image_format!r}: choose one of {', '.join(IMAGE_FORMATS)}")
    trigger = options.trigger
    if len(trigger) > MAX_TRIGGER_CHARS or trigger.translate(_CONTROL) != trigger:
        raise ValueError(
            f"trigger {trigger[:40]!r}{'...' if len(trigger) > 40 else ''} ({len(trigger)} characters): use one "
            f"short word or phrase (at most {MAX_TRIGGER_CHARS} characters, no control characters)"
        )
    if len(options.base_model) > 1000:
        raise ValueError(f"base_model is {len(options.base_model)} characters long: give a model name or path")
    text = str(Path(folder).expanduser().absolute())
    if not is_utf8(text):
        raise ValueError(
            f"output folder {os.fsencode(text)!r} is not valid UTF-8: dataset.toml (TOML 1.0, UTF-8 only) cannot "
            "name it, so sd-scripts could not find the images; choose a folder whose name is valid UTF-8"
        )


def _files(stem: str, image_format: str) -> tuple[str, str]:
    """Image and caption paths, relative to the dataset folder (as the manifest stores them)."""
    return f"{IMAGES_DIR}/{stem}.{image_format}", f"{IMAGES_DIR}/{stem}.txt"


def _frame_hashes(composites: list[Composite]) -> dict[str, str]:
    paths = {panel.frame_path for c in composites for panel in c.panels}
    return {path: file_sha256(path) for path in sorted(paths) if os.path.isfile(path)}


def own_file_sha256(path: Path) -> str | None:
    """sha256 of a regular file at `path` (links not followed); None when there is none
    (missing, a link, a pipe...)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        digest = hashlib.sha256()
        while block := handle.read(1 << 20):
            digest.update(block)
        return digest.hexdigest()


def clean_caption(text: str) -> tuple[str, bool]:
    """Control characters dropped, length capped; (text, whether it was shortened)."""
    text = text.translate(_CONTROL)
    if len(text) <= MAX_CAPTION_CHARS:
        return text, False
    return text[:MAX_CAPTION_CHARS].rstrip(), True


def _read_text(path: Path) -> str:
    with open(path, "rb") as handle:  # a regular file (checked by the caller), read bounded
        return handle.read(MAX_CAPTION_CHARS * 4).decode("utf-8", "replace")[:MAX_CAPTION_CHARS]


@dataclass
class _Export:
    """One export: its transaction, its options, what the last completed build wrote, its report."""

    transaction: Transaction
    options: ExportOptions
    previous: dict[str, ManifestRecord]
    report: ExportReport

    @property
    def folder(self) -> Path:
        return self.transaction.folder

    def stage_all(self, items: list[Composite]) -> None:
        unique: dict[str, Composite] = {}
        for composite in items:
            stem = composite_stem(composite)
            if stem in unique:
                reason = f"duplicate set name (stem {stem}); kept the first"
                self.report.skipped.append(SkippedInput(composite.set_name, reason))
            else:
                unique[stem] = composite
        records, captions = self.stage_composites(unique)
        self.stage_dropped(set(unique))
        self.report_strays(records)
        width, height = items[0].layout.width, items[0].layout.height
        image_dir = self.folder.resolve() / IMAGES_DIR
        options = self.options
        run_name = safe_name(options.name or self.folder.resolve().name, "iclora")
        stage = self.transaction.stage
        stage(CONTACT_SHEET, contact_sheet_png([c.image for c in unique.values()], [r.stem for r in records]))
        stage(AI_TOOLKIT_YAML, ai_toolkit_yaml(image_dir, run_name, options.base_model, captions[:2]).encode())
        stage(MANIFEST_NAME, manifest_text(records).encode("utf-8"))
        stage(SD_SCRIPTS_TOML, sd_scripts_dataset_toml(image_dir, width, height, options.num_repeats).encode("utf-8"))

    def stage_composites(self, unique: dict[str, Composite]) -> tuple[list[ManifestRecord], list[str]]:
        frame_hashes = _frame_hashes(list(unique.values()))
        image_format = self.options.image_format
        with ThreadPoolExecutor(max_workers=self.options.workers or default_workers()) as pool:
            pixels = dict(zip(unique, pool.map(lambda c: array_sha256(c.image), unique.values())))
            current = dict(zip(unique, pool.map(lambda s: self.image_is_current(s, pixels[s]), unique)))
            stale = [stem for stem in unique if current[stem] is None]
            # Encoding dominates export time; PIL's encoders release the GIL, so threads scale.
            encoded = dict(zip(stale, pool.map(lambda s: encode_image(unique[s].image, image_format), stale)))
        records, captions = [], []
        for stem, composite in unique.items():
            image_sha = current[stem] or self.stage_image(stem, encoded.pop(stem))
            caption_sha, provenance, text, caption_written = self.stage_caption(stem, composite)
            (self.report.written if (caption_written or current[stem] is None) else self.report.unchanged).append(stem)
            image_file, caption_file = _files(stem, image_format)
            records.append(
                ManifestRecord(
                    stem=stem,
                    image_file=image_file,
                    caption_file=caption_file,
                    composite_sha256=pixels[stem],
                    caption_sha256=caption_sha,
                    caption=provenance,
                    layout=composite.layout.describe(),
                    markers=composite.markers.as_dict(),
                    fit=composite.fit,
                    set_name=composite.set_name,
                    category=composite.category,
                    panels=panel_records(composite, frame_hashes),
                    image_sha256=image_sha,
                )
            )
            captions.append(text)
        return records, captions

    def image_is_current(self, stem: str, pixels_hash: str) -> str | None:
        """The image file's hash when the file on disk is exactly what the last completed build
        wrote for these pixels; None when it must be written."""
        old, image_file = self.previous.get(stem), _files(stem, self.options.image_format)[0]
        if old is None or old.composite_sha256 != pixels_hash or old.image_file != image_file:
            return None
        on_disk = own_file_sha256(self.folder / old.image_file)
        if on_disk is None:
            return None
        if not old.image_sha256:  # manifest of an older version: the file is trusted once, as it was then
            return on_disk
        return on_disk if on_disk == old.image_sha256 else None

    def stage_image(self, stem: str, data: bytes) -> str:
        old, image_file = self.previous.get(stem), _files(stem, self.options.image_format)[0]
        expected = ""
        if old is not None and old.image_file == image_file:
            # An older version's manifest has no file hash: its file is trusted as ours.
            expected = old.image_sha256 or own_file_sha256(self.folder / image_file) or ""
        self.keep_if_foreign(image_file, expected, "an image the last build had not written:")
        self.transaction.stage(image_file, data)
        if old is not None and old.image_file != image_file:  # format switched png <-> jpg
            if old.image_sha256 and own_file_sha256(self.folder / old.image_file) == old.image_sha256:
                self.transaction.delete_if_unchanged(old.image_file, old.image_sha256)
            else:
                self.keep_if_foreign(old.image_file, "", "an image the last build had not written:")
        return hashlib.sha256(data).hexdigest()

    def stage_caption(self, stem: str, composite: Composite) -> tuple[str, dict, str, bool]:
        """(hash for the record, provenance, caption text as it will be, written?)."""
        old, caption_file = self.previous.get(stem), _files(stem, self.options.image_format)[1]
        caption: Caption = composite.caption or template_caption(composite, self.options.trigger)
        if composite.caption:  # a captioner's caption takes this node's trigger too
            caption = replace(caption, text=with_trigger(caption.text, composite.markers, self.options.trigger))
        text, shortened = clean_caption(caption.text)
        if shortened:
            self.report.notes.append(
                f"caption of {stem} shortened to {MAX_CAPTION_CHARS} characters (it had {len(caption.text)})"
            )
        generated = hashlib.sha256(text.encode("utf-8")).hexdigest()
        provenance = {
            "backend": caption.backend,
            "model": caption.model,
            "prompt_version": caption.prompt_version,
            "edited_by_person": False,
        }
        path = self.folder / caption_file
        on_disk = own_file_sha256(path)
        if on_disk == generated:
            return generated, provenance, text, False
        if on_disk is not None and not (old is not None and on_disk == old.caption_sha256):
            # Not what the last completed build wrote: a person's edit.
            if not self.options.overwrite_edited_captions:
                self.report.captions_kept.append(caption_file)
                kept = {**(old.caption if old else {}), "edited_by_person": True}
                return (old.caption_sha256 if old else generated), kept, _read_text(path), False
            self.keep_if_foreign(caption_file, "", "edited caption")
        elif on_disk is None and os.path.lexists(path):  # a link or a pipe where a caption belongs
            self.keep_if_foreign(caption_file, "", "a link or special file at")
        self.transaction.stage(caption_file, text.encode("utf-8"))
        return generated, provenance, text, True

    def keep_if_foreign(self, relative: str, ours: str, what: str) -> None:
        """A file about to be replaced that is not what we wrote goes to replaced/, dated."""
        path = self.folder / relative
        if not os.path.lexists(path) or (ours and own_file_sha256(path) == ours):
            return
        target = self.free_name(REPLACED_DIR, Path(relative), self.options.stamp)
        self.transaction.move(relative, target)
        self.report.replaced.append(f"{what} {relative} (kept as {target})")

    def free_name(self, directory: str, name: Path, stamp: str = "") -> str:
        """`directory/name`, dated when `stamp` is given or the plain name is taken; never an existing file."""
        real_subdir(self.folder, directory)
        planned = {step[2] for step in self.transaction.plan if step[0] == "move"}
        candidates = [f"{directory}/{name.name}"] if not stamp else []
        stamp = stamp or datetime.now().strftime("%Y%m%d-%H%M%S")
        for number in range(1, 1000):
            candidates.append(f"{directory}/{name.stem}.{stamp}{f'-{number}' if number > 1 else ''}{name.suffix}")
        for candidate in candidates:
            if candidate not in planned and not os.path.lexists(self.folder / candidate):
                return candidate
        raise OSError(f"{self.folder / directory}: too many copies named {name.stem}.{stamp}*")

    def stage_dropped(self, seen: set[str]) -> None:
        """Sets no longer in the run: their files move to removed/ (inside the dataset; never deleted)."""
        for stem, old in self.previous.items():
            if stem in seen:
                continue
            for name in (old.image_file, old.caption_file):
                if os.path.lexists(self.folder / name):
                    self.transaction.move(name, self.free_name(REMOVED_DIR, Path(name)))
            self.report.moved_to_removed.append(stem)

    def report_strays(self, records: list[ManifestRecord]) -> None:
        """Images or captions in images/ that no record names: trainers will read them, so say so."""
        ours = {name for r in records for name in (r.image_file, r.caption_file)}
        ours |= {step[1] for step in self.transaction.plan if step[0] in ("move", "delete")}  # leaving images/ now
        strays = sorted(
            f"{IMAGES_DIR}/{display_path(p.name)}"
            for p in (self.folder / IMAGES_DIR).iterdir()
            if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".txt") and f"{IMAGES_DIR}/{p.name}" not in ours
        )
        if strays:
            listed = ", ".join(strays[:20]) + (" ..." if len(strays) > 20 else "")
            self.report.notes.append(
                f"{IMAGES_DIR}/ also holds {len(strays)} file(s) this dataset does not list "
                f"(trainers read them): {listed}"
            )
