"""Grid validity: is a composite really rows x cols separate panels?

Along each split line we compare the change *across* the line with the change between neighbouring
columns (rows) *inside* each panel, in 32-px segments. Two separate images meet with a jump (a seam);
one picture drawn across the border continues (bleeding): no jump, and the pixels along both sides
of the line vary together. Segments without texture on both sides (a shared white background, a sky
gradient) say nothing and are left out. The same seam test at the split lines of
other grids (up to 6 x 6) tells which grid the picture really has.
"""

from __future__ import annotations

import numpy as np

from .types import FLAG_BLEEDING, FLAG_PANEL_COUNT, GridCheck

SEGMENT = 32
SEAM_RATIO = 2.0  # across-line change > 2 x inside change (+ a little): a seam
SEAM_MARGIN = 3.0  # grey levels
CONTENT_MIN = 1.0  # grey-level std along a segment, gradients removed, for it to count as content
CONTINUITY_MIN = 0.5  # correlation of the two sides' profiles along the line: the same content continues
BLEED_LIMIT = 0.3  # share of informative segments that continue across a split line
SEAM_LINE_SHARE = 0.6  # of informative segments, for a line to count as a panel border
INFORMATIVE_MIN = 0.25  # of all segments, for a line to be judged at all
MAX_DETECTED = 6


def _line_segments(image: np.ndarray, x: int, divider: int) -> tuple[np.ndarray, np.ndarray]:
    """Per segment of the vertical line before column x: (is seam, is continuous), informative only."""
    before, after = divider // 2, divider - divider // 2
    left, right = x - before - 1, x + after
    if left < 1 or right + 1 >= image.shape[1]:
        return np.zeros(0, bool), np.zeros(0, bool)
    cross = np.abs(image[:, right] - image[:, left]).mean(axis=1)
    inside = 0.5 * (np.abs(image[:, left] - image[:, left - 1]) + np.abs(image[:, right + 1] - image[:, right]))
    inside = inside.mean(axis=1)
    count = len(cross) // SEGMENT
    if count == 0:
        return np.zeros(0, bool), np.zeros(0, bool)

    def segments(values):
        return values[: count * SEGMENT].reshape(count, SEGMENT, *values.shape[1:])

    cross, inside = segments(cross).mean(axis=1), segments(inside).mean(axis=1)
    profile_l, profile_r = (_detrended(segments(image[:, x].mean(axis=1))) for x in (left, right))
    spread_l, spread_r = profile_l.std(axis=1), profile_r.std(axis=1)
    correlation = (profile_l * profile_r).mean(axis=1) / np.maximum(spread_l * spread_r, 1e-6)
    energy = np.minimum(spread_l, spread_r)
    seam = cross > SEAM_RATIO * inside + SEAM_MARGIN
    continuous = ~seam & (energy > CONTENT_MIN) & (correlation > CONTINUITY_MIN)
    informative = seam | continuous
    if informative.sum() < max(2, INFORMATIVE_MIN * count):
        return np.zeros(0, bool), np.zeros(0, bool)
    return seam[informative], continuous[informative]


def _detrended(profiles: np.ndarray) -> np.ndarray:
    """Each row minus its least-squares line: smooth gradients (a sky, a backdrop) leave nothing."""
    t = np.arange(profiles.shape[1], dtype=np.float32) - (profiles.shape[1] - 1) / 2
    centred = profiles - profiles.mean(axis=1, keepdims=True)
    slope = (centred * t).sum(axis=1, keepdims=True) / (t * t).sum()
    return centred - slope * t


def _line_stats(image: np.ndarray, x: int, divider: int) -> tuple[float, float]:
    """(seam share, bleed share) of one vertical line; (nan, nan) when nothing can be told."""
    seam, continuous = _line_segments(image, x, divider)
    if len(seam) == 0:
        return float("nan"), float("nan")
    return float(seam.mean()), float(continuous.mean())


def _detected_count(image: np.ndarray, expected: int, divider: int) -> int:
    """The largest n <= 6 whose n - 1 evenly spaced vertical lines are all seams (1: none are)."""
    width = image.shape[1]
    found = 1
    for n in range(2, MAX_DETECTED + 1):
        lines = [round(k * width / n) for k in range(1, n)]
        width_of_divider = divider if n == expected else 0
        shares = [_line_stats(image, x, width_of_divider)[0] for x in lines]
        if all(share >= SEAM_LINE_SHARE for share in shares):  # nan compares False
            found = n
    return found


def check_grid(composite: np.ndarray, rows: int, cols: int, divider_width: int = 0) -> GridCheck:
    """Seams, bleeding and the grid the picture shows, of an H x W x 3 composite."""
    image = composite[..., :3].astype(np.float32)
    transposed = image.transpose(1, 0, 2)  # horizontal lines become vertical ones
    check = GridCheck(rows=rows, cols=cols)
    height, width = image.shape[:2]
    for axis_image, count, extent in ((image, cols, width), (transposed, rows, height)):
        for k in range(1, count):
            seam, bleed = _line_stats(axis_image, k * extent // count, divider_width)
            check.seam_share.append(seam)
            check.bleed_share.append(bleed)
    check.detected_cols = _detected_count(image, cols, divider_width)
    check.detected_rows = _detected_count(transposed, rows, divider_width)
    if any(b > BLEED_LIMIT for b in check.bleed_share if b == b):
        check.flags.append(FLAG_BLEEDING)
    wrong_cols = check.detected_cols not in (1, cols)
    wrong_rows = check.detected_rows not in (1, rows)
    if wrong_cols or wrong_rows:
        check.flags.append(FLAG_PANEL_COUNT)
    return check
