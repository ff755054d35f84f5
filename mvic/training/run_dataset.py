"""The run's own view of the dataset: `<run>/dataset/` and `<run>/dataset.toml`.

sd-scripts trains on whatever folder its dataset config names and writes its latent and
text-encoder caches next to the images it reads. So the run never trusts the dataset's own
`dataset.toml` (a copied folder's still names the original, an absolute path), and never
writes into the dataset folder (it may be an allowed, read-only folder): each launch links
the images of the folder it was given into `<run>/dataset/`, writes the checked captions
there, and points a config of its own at that folder. Caches then live in the run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..export.trainer_configs import sd_scripts_dataset_toml
from ..files import atomic_write_text
from .preflight import IMAGE_SUFFIXES, TrainingDataset
from .run_state import invalidate_stale_caches


def prepare_run_dataset(dataset: TrainingDataset, folder: Path, config: Path, state: dict) -> list[Path]:
    """Write `folder` (TrainingSettings.run_dataset_dir) and `config` (its dataset_config);
    returns the caches deleted as stale."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = set()
    for item in dataset.images:
        _place(folder / item.image.name, item.image)
        caption = folder / f"{item.stem}.txt"
        if item.caption is None:
            caption.unlink(missing_ok=True)  # sd-scripts then trains it with an empty caption (opted in)
        elif not caption.is_file() or caption.read_text(encoding="utf-8") != item.caption:
            atomic_write_text(caption, item.caption)
        wanted |= {item.image.name, caption.name}
    for entry in folder.iterdir():  # images no longer in the dataset, and their captions
        if entry.name not in wanted and (entry.suffix.lower() in IMAGE_SUFFIXES or entry.suffix == ".txt"):
            entry.unlink()
    deleted = invalidate_stale_caches(folder, state)
    atomic_write_text(config, sd_scripts_dataset_toml(folder, *dataset.size, dataset.num_repeats))
    return deleted


def _place(link: Path, image: Path) -> None:
    """A link to the image (a hard link or a copy where symbolic links are not allowed)."""
    if link.is_symlink() and os.readlink(link) == str(image):
        return
    if link.exists() or link.is_symlink():
        link.unlink()
    try:
        link.symlink_to(image)
    except OSError:
        try:
            os.link(image, link)
        except OSError:
            shutil.copy2(image, link)
