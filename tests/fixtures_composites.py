"""Finished IC-LoRA composites written to disk for tests, the way they come from elsewhere:
uneven sizes, seams a few pixels off the exact fractions, captions in two marker styles,
and the hidden files a Mac leaves behind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# 3 scenes stacked (rows of these heights, one width each), like the public In-Context-LoRA film data.
FILMS = {"film1": (270, [115, 111, 115]), "film2": (268, [117, 120, 116]), "film3": (272, [120, 120, 120])}
# 2x2 grids: (column widths, row heights).
BAGS = {"bag1": ([128, 133], [131, 128]), "bag2": ([128, 128], [128, 128]), "bag3": ([127, 123], [129, 133])}

FILM_CAPTION = (
    "[MOVIE-SHOTS] In a quiet town, [SCENE-1] <Ana> opens the bakery at dawn, [SCENE-2] kneads dough "
    "while the radio plays, [SCENE-3] and hands a warm loaf to the first customer.\n"
)
BAG_CAPTION = (
    "[FOUR-VIEWS] This set of four images shows a light blue bag from different angles; [TOP-LEFT] front view; "
    "[TOP-RIGHT] left side view; [BOTTOM-LEFT] back view; [BOTTOM-RIGHT] right side view."
)


@dataclass
class WrittenComposite:
    image: Path
    caption: str
    panels: list[np.ndarray]  # the true panels, in reading order, as written (before any JPEG loss)


def smooth_panel(width: int, height: int, seed: int) -> np.ndarray:
    """A photo-like panel: a soft two-colour gradient and a blurry blob, no hard edges near its borders."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(30, 226, 3), rng.integers(30, 226, 3)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (x / max(1, width - 1) * 0.6 + y / max(1, height - 1) * 0.4)[..., None]
    picture = a * (1 - t) + b * t
    cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
    blob = np.exp(-(((x - cx) / (0.2 * width)) ** 2 + ((y - cy) / (0.2 * height)) ** 2))[..., None]
    picture = picture * (1 - 0.5 * blob) + rng.integers(0, 256, 3) * 0.5 * blob
    return np.clip(picture, 0, 255).astype(np.uint8)


def grid_of(panels: list[np.ndarray], widths: list[int], heights: list[int]) -> np.ndarray:
    rows = [np.concatenate(panels[r * len(widths) : (r + 1) * len(widths)], axis=1) for r in range(len(heights))]
    return np.concatenate(rows, axis=0)


def write_composite(
    folder: Path, name: str, widths: list[int], heights: list[int], caption: str | None, seed: int, fmt: str = "png"
) -> WrittenComposite:
    panels = [smooth_panel(w, h, seed * 10 + i) for i, (h, w) in enumerate((h, w) for h in heights for w in widths)]
    image = folder / f"{name}.{fmt}"
    Image.fromarray(grid_of(panels, widths, heights)).save(image, **({"quality": 93} if fmt == "jpg" else {}))
    if caption is not None:
        (folder / f"{name}.txt").write_text(caption, encoding="utf-8")
    return WrittenComposite(image, caption or "", panels)


def write_mac_leftovers(folder: Path) -> None:
    """What unzipping on a Mac leaves: AppleDouble `._*` files and `.DS_Store`."""
    for name in ("._film1.png", "._film1.txt", "._bag1.jpg"):
        (folder / name).write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))


def write_films(folder: Path, fmt: str = "png") -> dict[str, WrittenComposite]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        name: write_composite(folder, name, [w], heights, FILM_CAPTION.replace("<Ana>", f"<Ana{i}>"), i, fmt)
        for i, (name, (w, heights)) in enumerate(FILMS.items(), start=1)
    }
    write_mac_leftovers(folder)
    return out


def write_bags(folder: Path, fmt: str = "jpg") -> dict[str, WrittenComposite]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        name: write_composite(folder, name, widths, heights, BAG_CAPTION.replace("light blue", colour), 20 + i, fmt)
        for i, ((name, (widths, heights)), colour) in enumerate(zip(BAGS.items(), ("red", "green", "blue")))
    }
    write_mac_leftovers(folder)
    return out
