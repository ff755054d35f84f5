"""A loss-curve picture for the node's IMAGE output (PIL only: no matplotlib dependency)."""

from __future__ import annotations

import numpy as np


def loss_curve_image(points: list[tuple[int, float]], width: int = 512, height: int = 256) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 48, width - 12, 12, height - 28
    draw.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    finite = [(s, l) for s, l in points if np.isfinite(l)]
    if not finite:
        draw.text((left + 8, top + 8), "no loss reported yet", fill=(80, 80, 80))
        return np.asarray(image)
    steps = np.array([s for s, _ in finite], dtype=float)
    losses = np.array([l for _, l in finite], dtype=float)
    lo, hi = float(losses.min()), float(losses.max())
    hi = hi if hi > lo else lo + 1e-6
    s0, s1 = float(steps.min()), float(steps.max()) if steps.max() > steps.min() else float(steps.min()) + 1
    xs = left + (steps - s0) / (s1 - s0) * (right - left)
    ys = bottom - (losses - lo) / (hi - lo) * (bottom - top)
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(30, 90, 200), width=2)
    draw.text((4, top), f"{hi:.3g}", fill=(60, 60, 60))
    draw.text((4, bottom - 10), f"{lo:.3g}", fill=(60, 60, 60))
    draw.text((left, bottom + 6), f"step {int(s0)}", fill=(60, 60, 60))
    draw.text((right - 70, bottom + 6), f"step {int(s1)}", fill=(60, 60, 60))
    return np.asarray(image)
