"""Small real image sets written to disk for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_frames(folder: Path, count: int, size=(96, 64), seed: int = 0, fmt: str = "jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        base = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize(size, Image.Resampling.NEAREST)
        path = folder / f"frame{i + 1}.{fmt}"
        image.save(path)
        paths.append(path)
    return paths


def write_folder_sets(root: Path, names: list[str], frames: int = 6, size=(96, 64)) -> Path:
    for number, name in enumerate(names):
        write_frames(root / name, frames, size, seed=number)
    return root
