"""What survives between runs: sd-scripts' saved states (for resume) and its latent /
text-encoder caches (in the run's own dataset folder, see run_dataset.py), which sd-scripts
reuses even when the image or caption changed."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write_text

CACHE_STATE = ".mvic_cache_state.json"


STATE_FILES = ("model.safetensors", "optimizer.bin", "scheduler.bin", "train_state.json")
ATTEMPT_FILE = "mvic_attempt.json"


@dataclass(frozen=True)
class SavedState:
    folder: Path
    step: int  # the real step: the attempt's starting step + sd-scripts' own count


def begin_attempt(outputs: Path, base_step: int, config_key: str) -> int:
    """A fresh output folder for the next launch, recording the step it starts from.

    sd-scripts restarts its step counter on --resume, so a resumed run would save
    `-step00000002-state` again and overwrite the state it started from; one folder
    per attempt keeps every state, and the recorded base gives the real step."""
    attempt = 1 + max((int(p.name[7:]) for p in outputs.glob("attempt*") if p.name[7:].isdigit()), default=0)
    folder = outputs / f"attempt{attempt}"
    folder.mkdir(parents=True)
    atomic_write_text(folder / ATTEMPT_FILE, json.dumps({"base_step": base_step, "config": config_key}))
    return attempt


def newest_state(outputs: Path, output_name: str, config_key: str) -> SavedState | None:
    """The complete saved state with the highest real step, over the attempts made with
    the same settings (a state of another rank or model cannot be resumed)."""
    best = None
    for attempt in outputs.glob("attempt*"):
        try:
            record = json.loads((attempt / ATTEMPT_FILE).read_text())
            base = int(record["base_step"])
        except (OSError, ValueError, KeyError):
            continue
        if record.get("config") != config_key:
            continue
        for folder in attempt.glob(f"{output_name}*-state"):
            # train_state.json is written first: a save killed midway lacks the others.
            if not all((folder / name).is_file() for name in STATE_FILES):
                continue
            try:
                step = base + int(json.loads((folder / "train_state.json").read_text())["current_step"])
            except (ValueError, KeyError, TypeError):
                continue
            if best is None or step > best.step:
                best = SavedState(folder, step)
    return best


def dataset_key(state: dict[str, dict[str, str]]) -> str:
    """One hash of the dataset's state (TrainingDataset.state()): images and captions as they are now."""
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def invalidate_stale_caches(folder: Path, current: dict[str, dict[str, str]]) -> list[Path]:
    """Delete `*_flux.npz` (latents) whose image changed and `*_flux_te.npz` (text encoder
    outputs) whose caption changed since the caches in `folder` were made. Caches of unknown
    provenance (no record) are deleted too. Returns the deleted files."""
    record_path = folder / CACHE_STATE
    try:
        previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    except ValueError:
        previous = {}
    deleted = []
    for cache in sorted(folder.glob("*.npz")):
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


def record_cache_state(folder: Path, current: dict[str, dict[str, str]]) -> None:
    """Remember which images and captions the caches now in `folder` were made from."""
    atomic_write_text(folder / CACHE_STATE, json.dumps(current, indent=1, sort_keys=True))
