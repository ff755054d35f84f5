"""Trainer pre-flight: what the dataset folder really holds, checked before anything is launched.

A dataset folder may come from someone else, so nothing in it is trusted to point elsewhere:
images and captions are taken from its own `images/` folder (never through a manifest path or
a link that leaves the folder), the manifest gives only the layout and the markers, and the
folder's `dataset.toml` is not used at all (the run writes its own, see run_dataset.py).
Caption problems (no caption, markers that don't match the layout) are listed by file: they
stop the run unless the user chose to train anyway.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..captions.text import MARKER_TOKEN, CaptionParseError, parse_caption
from ..export.folder import IMAGES_DIR, MANIFEST_NAME, SD_SCRIPTS_TOML
from ..export.manifest import read_manifest
from ..lora_file import check_layout_bounds
from ..markers import LayoutMarkers
from ..paths import is_inside
from .errors import TrainingError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # what sd-scripts globs (case-insensitive)
MAX_CAPTION_BYTES = 64 * 1024  # T5 reads 512 tokens; anything near this size is not a caption
CAPTION_CHOICES = ("refuse", "warn and train")
_NUM_REPEATS = re.compile(r"^\s*num_repeats\s*=\s*(\d{1,4})\s*$", re.MULTILINE)
LISTED = 10  # files named per problem in an error


@dataclass(frozen=True)
class TrainingImage:
    stem: str
    image: Path  # resolved, inside the dataset folder
    caption: str | None  # None: no usable caption file


@dataclass
class TrainingDataset:
    folder: Path  # resolved
    layout: dict  # rows, cols, panel_width, panel_height
    markers: dict  # prefix, panels
    images: list[TrainingImage]
    num_repeats: int = 1
    problems: list[str] = field(default_factory=list)  # caption problems, one line per file

    @property
    def size(self) -> tuple[int, int]:
        return self.layout["cols"] * self.layout["panel_width"], self.layout["rows"] * self.layout["panel_height"]

    def captions(self) -> list[str]:
        return [item.caption for item in self.images if item.caption]

    def marked_captions(self) -> list[str]:
        """Captions whose markers match the layout: what the LoRA really learns to read."""
        return [c for c in self.captions() if not marker_problems(c, self.markers)]

    def trigger(self) -> str:
        """The trigger the first well-formed marked caption leads with (read by the caption codec)."""
        markers = LayoutMarkers(prefix=self.markers["prefix"], panels=tuple(self.markers["panels"]))
        for caption in self.marked_captions():
            try:
                return parse_caption(caption, markers).trigger
            except CaptionParseError:
                continue
        return ""

    def state(self) -> dict[str, dict[str, str]]:
        """Per stem: hashes of the image file and caption as they are now (see run_state.py)."""
        return {
            item.stem: {
                "image": _file_hash(item.image),
                "caption": hashlib.sha256(item.caption.encode()).hexdigest() if item.caption else "",
            }
            for item in self.images
        }


def read_dataset(folder: Path) -> TrainingDataset:
    """The dataset as the trainer will use it; TrainingError for what cannot be trained at all."""
    folder = Path(folder).resolve()
    if not (folder / MANIFEST_NAME).is_file():
        raise TrainingError(
            f"{folder} has no {MANIFEST_NAME}: give a folder written by SaveICLoRADataset "
            "(connect its dataset_dir) or `python -m mvic build`"
        )
    layout, markers = _layout_and_markers(folder)
    images = [_image(folder, path) for path in _image_files(folder)]
    if not images:
        raise TrainingError(f"{folder / IMAGES_DIR} holds no images (.png/.jpg/.webp): re-export the dataset")
    dataset = TrainingDataset(folder, layout, markers, images, _num_repeats(folder))
    _check_sizes(dataset)
    dataset.problems = caption_problems(dataset)
    return dataset


def _layout_and_markers(folder: Path) -> tuple[dict, dict]:
    problems: list[str] = []
    records = read_manifest(folder, problems)
    if problems:  # a record naming files outside the folder, or a damaged line: nothing to guess from
        raise TrainingError(
            "the trainer reads only what the dataset's own manifest names inside it; re-export the "
            "dataset with SaveICLoRADataset:\n" + "\n".join(problems)
        )
    if not records:
        raise TrainingError(
            f"{folder / MANIFEST_NAME} has no readable records: re-export the dataset with SaveICLoRADataset"
        )
    for record in records.values():
        for name in ("image_file", "caption_file"):
            value = getattr(record, name)
            if not isinstance(value, str) or Path(value).is_absolute() or ".." in Path(value).parts:
                raise TrainingError(
                    f"{folder / MANIFEST_NAME}: record {record.stem!r} names {name} {value!r} "
                    "outside the dataset folder; the trainer reads only files inside it "
                    "(re-export the dataset)"
                )
    layouts = {tuple(sorted(_layout(r.layout, folder).items())) for r in records.values()}
    marker_sets = {(r.markers.get("prefix"), tuple(r.markers.get("panels", ()))) for r in records.values()}
    if len(layouts) > 1 or len(marker_sets) > 1:
        raise TrainingError(
            f"{folder / MANIFEST_NAME}: the records disagree on the layout or the markers "
            f"({len(layouts)} layouts, {len(marker_sets)} marker sets); one dataset trains one layout"
        )
    layout = dict(layouts.pop())
    prefix, panels = marker_sets.pop()
    if not isinstance(prefix, str) or len(panels) != layout["rows"] * layout["cols"]:
        raise TrainingError(
            f"{folder / MANIFEST_NAME}: markers {prefix!r} {list(panels)} do not fit "
            f"{layout['rows']}x{layout['cols']} panels"
        )
    return layout, {"prefix": prefix, "panels": list(panels)}


def _layout(raw: dict, folder: Path) -> dict[str, int]:
    try:
        layout = {k: int(raw[k]) for k in ("rows", "cols", "panel_width", "panel_height")}
        check_layout_bounds(*layout.values(), where=f"{folder / MANIFEST_NAME}: layout")
    except (KeyError, TypeError, ValueError) as exc:
        raise TrainingError(f"{folder / MANIFEST_NAME}: unusable layout {raw!r} ({exc})") from None
    return layout


def _image_files(folder: Path) -> list[Path]:
    images = folder / IMAGES_DIR
    if not images.is_dir() or not is_inside(images, folder):
        return []
    return sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _image(folder: Path, path: Path) -> TrainingImage:
    if not is_inside(path, folder) or not path.resolve().is_file():
        raise TrainingError(
            f"{path} is a link that leaves the dataset folder {folder} (or to nothing): "
            "the trainer reads only files inside it; replace the link with the image"
        )
    return TrainingImage(path.stem, path.resolve(), _caption(folder, path.with_suffix(".txt")))


def _caption(folder: Path, path: Path) -> str | None:
    if not path.exists() and not path.is_symlink():
        return None
    if not is_inside(path, folder) or not path.resolve().is_file():
        raise TrainingError(
            f"{path} is a link that leaves the dataset folder {folder} (or to nothing): "
            "the trainer reads only files inside it; replace the link with the caption text"
        )
    size = path.stat().st_size
    if size > MAX_CAPTION_BYTES:
        raise TrainingError(
            f"{path} is {size} bytes: a caption is at most {MAX_CAPTION_BYTES // 1024} KiB; shorten or re-caption it"
        )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        return None  # reported as a caption problem, like a missing one
    return text or None


def _num_repeats(folder: Path) -> int:
    """The only thing taken from the folder's own dataset.toml: SaveICLoRADataset's num_repeats."""
    try:
        text = (folder / SD_SCRIPTS_TOML).read_text(encoding="utf-8")[:65536]
    except (OSError, ValueError):
        return 1
    match = _NUM_REPEATS.search(text)  # no TOML parser before Python 3.11; the saver writes one subset
    return int(match.group(1)) if match and 1 <= int(match.group(1)) <= 1000 else 1


def _check_sizes(dataset: TrainingDataset) -> None:
    from PIL import Image

    wrong = []
    for item in dataset.images:
        try:
            with Image.open(item.image) as image:  # reads the header only
                size = image.size
        except (OSError, ValueError) as exc:
            wrong.append(f"{item.image.name}: not readable ({exc})")
            continue
        if size != dataset.size:
            wrong.append(f"{item.image.name}: {size[0]}x{size[1]}")
    if wrong:
        raise TrainingError(
            f"{dataset.folder / IMAGES_DIR}: {len(wrong)} image(s) are not the layout's "
            f"{dataset.size[0]}x{dataset.size[1]} composite: {_listed(wrong)}. Re-export the dataset"
        )


def marker_problems(caption: str, markers: dict) -> list[str]:
    """What is wrong with a caption's markers: missing, foreign to the layout, out of order."""
    expected = [markers["prefix"], *markers["panels"]]
    found = MARKER_TOKEN.findall(caption)
    problems = []
    missing = [m for m in expected if m not in found]
    if missing:
        problems.append("missing " + " ".join(missing))
    foreign = sorted(set(found) - set(expected))
    if foreign:
        problems.append("markers not of this layout: " + " ".join(foreign))
    if not missing:
        positions = [caption.index(m) for m in expected]
        if positions != sorted(positions):
            problems.append("markers out of order (expected " + " ".join(expected) + ")")
    return problems


def caption_problems(dataset: TrainingDataset) -> list[str]:
    lines = []
    for item in dataset.images:
        caption_file = f"{IMAGES_DIR}/{item.stem}.txt"
        if item.caption is None:
            lines.append(f"{caption_file}: no caption for {item.image.name} (missing, empty or not UTF-8)")
            continue
        problems = marker_problems(item.caption, dataset.markers)
        if problems:
            lines.append(f"{caption_file}: {'; '.join(problems)}")
    return lines


def check_captions(dataset: TrainingDataset, choice: str, log) -> None:
    """'refuse': a TrainingError listing every caption problem; 'warn and train': each is logged."""
    if choice not in CAPTION_CHOICES:
        raise ValueError(f"caption_problems {choice!r}: choose one of {', '.join(CAPTION_CHOICES)}")
    if not dataset.problems:
        return
    head = (
        f"{len(dataset.problems)} of {len(dataset.images)} image(s) in {dataset.folder} have caption problems "
        f"(layout {dataset.layout['rows']}x{dataset.layout['cols']}, markers {dataset.markers['prefix']} "
        f"{' '.join(dataset.markers['panels'])})"
    )
    if choice == "refuse":
        raise TrainingError(
            f"{head}:\n  "
            + "\n  ".join(dataset.problems[: LISTED * 3])
            + "\nFix the captions (or re-caption them), or set caption_problems to 'warn and train'"
        )
    log(f"[mvic] WARNING {head}; training anyway:\n  " + "\n  ".join(dataset.problems))


def _listed(items: list[str]) -> str:
    return ", ".join(items[:LISTED]) + (f" and {len(items) - LISTED} more" if len(items) > LISTED else "")


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------ disk space


@dataclass(frozen=True)
class DiskNeeds:
    caches: int  # bytes of latent and text-encoder caches still to be written
    per_save: int  # one saved LoRA plus one saved state
    saves: int
    lora: int  # the finished LoRA copied to the loras folder

    @property
    def run_total(self) -> int:
        return self.caches + self.per_save * self.saves


def lora_parameters(flux_header: dict, rank: int) -> int:
    """LoRA parameters lora_flux adds: rank x (in + out) per 2-D weight of the FLUX blocks."""
    total = 0
    for name, info in flux_header.items():
        if name.endswith(".weight") and ("double_blocks." in name or "single_blocks." in name):
            shape = info.get("shape", []) if isinstance(info, dict) else []
            if len(shape) == 2:
                total += rank * (shape[0] + shape[1])
    return total


def estimate_disk(
    images: int,
    cached: int,
    size: tuple[int, int],
    t5_tokens: int,
    parameters: int,
    steps: int,
    save_every: int,
    optimizer_8bit: bool,
) -> DiskNeeds:
    """Caches are float32 (sd-scripts' npz files): 16-channel latents at 1/8 size, T5 output
    tokens x 4096 plus CLIP-L's pooled 768. A state holds the fp32 LoRA weights and AdamW's two
    moments (1 byte each for 8-bit optimizers); the saved LoRA is bf16."""
    latents = 16 * (size[0] // 8) * (size[1] // 8) * 4
    text = t5_tokens * 4096 * 4 + t5_tokens * 4 * 2 + 768 * 4
    state = parameters * (4 + (2 if optimizer_8bit else 8))
    saves = (steps // save_every if save_every else 0) + 1
    return DiskNeeds(
        caches=max(0, images - cached) * (latents + text),
        per_save=state + parameters * 2,
        saves=saves,
        lora=parameters * 2,
    )


def check_free_space(needs: DiskNeeds, run_dir: Path, loras_dir: Path) -> None:
    """A TrainingError naming the folder, what is needed and what is free, when it clearly won't fit."""
    for folder, need, what in (
        (run_dir, needs.run_total, f"caches and {needs.saves} saved state(s)"),
        (loras_dir, needs.lora, "the finished LoRA"),
    ):
        free = shutil.disk_usage(_existing(folder)).free
        if free < need * 1.05 + (8 << 20):
            raise TrainingError(
                f"not enough free disk space in {folder}: this run needs about {_size(need)} for {what} "
                f"({_size(needs.per_save)} per save), {_size(free)} is free. Free some space, or save less often "
                "(save_every_n_steps)"
            )


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
