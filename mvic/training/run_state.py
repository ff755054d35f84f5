"""What survives between runs: sd-scripts' saved states (for resume) and its latent /
text-encoder caches, which sd-scripts reuses even when the image or caption changed."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..export.atomic import atomic_write_text
from ..export.dataset import IMAGES_DIR
from ..export.manifest import read_manifest

CACHE_STATE = ".mvic_cache_state.json"


def newest_state(output_dir: Path, output_name: str) -> tuple[Path, int] | None:
    """The saved state with the highest step (sd-scripts writes train_state.json in each)."""
    best = None
    for folder in output_dir.glob(f"{output_name}*-state"):
        state_file = folder / "train_state.json"
        if not state_file.is_file():
            continue
        try:
            step = int(json.loads(state_file.read_text())["current_step"])
        except (ValueError, KeyError, TypeError):
            continue
        if best is None or step > best[1]:
            best = (folder, step)
    return best


def _dataset_state(dataset_dir: Path) -> dict[str, dict[str, str]]:
    """Per stem: the composite's pixel hash and the caption file as it is now (edits included)."""
    state = {}
    for stem, record in read_manifest(dataset_dir).items():
        caption = dataset_dir / record.caption_file
        text_hash = hashlib.sha256(caption.read_bytes()).hexdigest() if caption.is_file() else ""
        state[stem] = {"image": record.composite_sha256, "caption": text_hash}
    return state


def invalidate_stale_caches(dataset_dir: Path) -> list[Path]:
    """Delete `*_flux.npz` (latents) whose image changed and `*_flux_te.npz` (text encoder
    outputs) whose caption changed since the caches were made. Caches of unknown
    provenance (no record) are deleted too. Returns the deleted files."""
    images = dataset_dir / IMAGES_DIR
    record_path = dataset_dir / CACHE_STATE
    try:
        previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    except ValueError:
        previous = {}
    current = _dataset_state(dataset_dir)
    deleted = []
    for cache in sorted(images.glob("*.npz")):
        if cache.name.endswith("_flux_te.npz"):
            stem, kind = cache.name[: -len("_flux_te.npz")], "caption"
        elif cache.name.endswith("_flux.npz"):
            stem, kind = cache.name[: -len("_flux.npz")].rsplit("_", 1)[0], "image"  # <stem>_<W>x<H>_flux.npz
        else:
            continue
        old, new = previous.get(stem), current.get(stem)
        if old is None or new is None or old.get(kind) != new.get(kind):
            cache.unlink()
            deleted.append(cache)
    return deleted


def record_cache_state(dataset_dir: Path) -> None:
    """Remember which images and captions the caches now on disk were made from."""
    atomic_write_text(dataset_dir / CACHE_STATE, json.dumps(_dataset_state(dataset_dir), indent=1, sort_keys=True))
