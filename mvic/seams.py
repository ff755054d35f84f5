"""Seam-tolerant split: find where the panels of a composite really meet.

Composites made elsewhere rarely cut at exact fractions: the public IC-LoRA film data
stacks three scenes in 1363 or 1423 pixels, and even a 1440-pixel one meets at 483.
Each panel boundary is looked for within a few pixels of its nominal line (k * side / n,
so a remainder of a few pixels is spread over the panels) as the row (or column) where
the picture changes across most of its width. Where nothing clearly stands out, or where
the nominal line runs through a flat band (a divider, a letterbox bar), the nominal line
is kept: our own composites, cut exactly, split exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLAT_STD = 2.5  # a row whose pixels vary less than this (0-255) is flat: a divider or a bar
SEAM_RATIO = 3.0  # a seam changes the picture this many times more than the rows around it
SEAM_MIN = 3.0  # ... and by at least this much (median over the row, 0-255)
NOMINAL_SHARE = 0.95  # the nominal line wins a near tie with the strongest change


@dataclass(frozen=True)
class Cut:
    """One boundary between panels: where it was cut, where it nominally is, and why."""

    position: int
    nominal: int
    found: bool  # a clear seam was found (at `position`)
    strength: float  # change across the cut (median over the row, 0-255)


def search_radius(side: int) -> int:
    """How far from the nominal line a seam is looked for: a few pixels, more on large panels."""
    return int(min(32, max(6, round(side * 0.03))))


def _row_change(strip: np.ndarray) -> np.ndarray:
    """change[i]: how much the picture changes between rows i and i+1 (median over the row)."""
    diff = np.abs(np.diff(strip.astype(np.int16), axis=0)).mean(axis=2)
    return np.median(diff, axis=1)


def _is_flat(row: np.ndarray) -> bool:
    return float(row.astype(np.float32).std(axis=0).mean()) < FLAT_STD


def _nominal(k: int, side: int, parts: int) -> int:
    return (k * side + parts // 2) // parts  # k * side / parts, rounded: a remainder is spread evenly


def _segments(side: int, parts: int, margin: int) -> list[tuple[int, int]]:
    """The `parts` panels' spans along a side, kept `margin` pixels clear of their nominal boundaries."""
    bounds = [_nominal(k, side, parts) for k in range(parts + 1)]
    out = []
    for start, end in zip(bounds, bounds[1:]):
        keep = min(margin, (end - start) // 4)
        out.append((start + keep if start else start, end - keep if end < side else end))
    return out


def find_cut(strips: list[np.ndarray], nominal: int, radius: int, low: int, high: int) -> Cut:
    """The boundary near row `nominal` (rows `low` < cut < `high`) of H x w x 3 strips: one per
    panel across, for a seam runs through all of them (a letterbox edge inside one panel does not)."""
    if any(_is_flat(strip[nominal - 1]) or _is_flat(strip[nominal]) for strip in strips):
        return Cut(nominal, nominal, False, 0.0)
    first, last = max(low + 1, nominal - radius), min(high - 1, nominal + radius)
    if not first <= nominal <= last:
        return Cut(nominal, nominal, False, 0.0)
    # change[i]: between rows first-1+i and first+i, the weakest over the strips
    change = np.min([_row_change(strip[first - 1 : last + 1]) for strip in strips], axis=0)
    baseline = float(np.median(change))
    peak = int(np.argmax(change))
    strength = float(change[peak])
    if strength < SEAM_MIN or strength < SEAM_RATIO * max(baseline, 1.0):
        return Cut(nominal, nominal, False, float(change[nominal - first]))
    at_nominal = float(change[nominal - first])
    if at_nominal >= NOMINAL_SHARE * strength and at_nominal >= SEAM_RATIO * max(baseline, 1.0):
        return Cut(nominal, nominal, True, at_nominal)
    return Cut(first + peak, nominal, True, strength)


def find_cuts(image: np.ndarray, parts: int, across: int = 1) -> list[Cut]:
    """The parts-1 boundaries between `parts` panels stacked along axis 0 of `image`, which has
    `across` panels along axis 1."""
    side = image.shape[0]
    if parts < 1 or side < parts:
        raise ValueError(f"{side} pixels do not split into {parts} panels")
    radius = search_radius(side // parts)
    strips = [image[:, start:end] for start, end in _segments(image.shape[1], across, radius)]
    cuts: list[Cut] = []
    for k in range(1, parts):
        low = cuts[-1].position if cuts else 0
        high = _nominal(k + 1, side, parts) if k + 1 < parts else side
        cuts.append(find_cut(strips, _nominal(k, side, parts), radius, low, high))
    return cuts


def panel_boxes(image: np.ndarray, rows: int, cols: int) -> tuple[list[tuple[int, int, int, int]], list[Cut]]:
    """(top, bottom, left, right) of each panel in reading order, seams found near the
    nominal lines, and the cuts (rows first, then columns)."""
    if rows < 1 or cols < 1:
        raise ValueError(f"layout {rows}x{cols}: rows and cols must be at least 1")
    row_cuts = find_cuts(image, rows, cols)
    col_cuts = find_cuts(image.transpose(1, 0, 2), cols, rows)
    ys = [0, *(c.position for c in row_cuts), image.shape[0]]
    xs = [0, *(c.position for c in col_cuts), image.shape[1]]
    boxes = [(ys[r], ys[r + 1], xs[c], xs[c + 1]) for r in range(rows) for c in range(cols)]
    return boxes, row_cuts + col_cuts


def equal_size_boxes(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """The boxes centre-cropped to the smallest height and width among them (no resampling)."""
    height = min(bottom - top for top, bottom, _, _ in boxes)
    width = min(right - left for _, _, left, right in boxes)
    out = []
    for top, bottom, left, right in boxes:
        dy, dx = (bottom - top - height) // 2, (right - left - width) // 2
        out.append((top + dy, top + dy + height, left + dx, left + dx + width))
    return out


def split_tolerant(image: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    """Panels of equal size cut at the seams found; the exact split when the seams are exact."""
    boxes, _ = panel_boxes(image, rows, cols)
    return [image[t:b, l:r].copy() for t, b, l, r in equal_size_boxes(boxes)]
