"""Choosing which frames of a capture become the panels.

With camera poses we want views that see the object from directions as different
as possible: each camera's direction from the object centre is a point on the unit
sphere, and we maximise the smallest angle between chosen points (farthest-point
sampling, then swaps). Frame-order spacing is the fallback; it fails when the
operator lingers or changes height mid-orbit, which is exactly what phones do.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from .datatypes import CameraPose, ViewAngle


def estimate_object_center(poses: list[CameraPose]) -> np.ndarray:
    """Least-squares point nearest to every camera's optical axis (cameras look at the object)."""
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for pose in poses:
        d = pose.forward / np.linalg.norm(pose.forward)
        proj = np.eye(3) - np.outer(d, d)
        a += proj
        b += proj @ pose.center
    center, *_ = np.linalg.lstsq(a, b, rcond=None)
    return center


def view_directions(poses: list[CameraPose], center: np.ndarray | None = None) -> np.ndarray:
    """Unit vectors from the object centre to each camera centre (N x 3)."""
    center = estimate_object_center(poses) if center is None else center
    vectors = np.stack([pose.center for pose in poses]) - center
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def angle_matrix(directions: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(directions @ directions.T, -1.0, 1.0))


def min_pairwise_angle(directions: np.ndarray, chosen) -> float:
    """Smallest angle (radians) between any two chosen directions."""
    angles = angle_matrix(directions[list(chosen)])
    return float(angles[np.triu_indices(len(chosen), 1)].min())


def _score(angles: np.ndarray, chosen: list[int]) -> tuple[float, float]:
    sub = angles[np.ix_(chosen, chosen)][np.triu_indices(len(chosen), 1)]
    return float(sub.min()), float(sub.sum())


def select_views_by_pose(poses: list[CameraPose], k: int) -> list[int]:
    """Indices of k poses whose view directions are most spread out (deterministic).

    Returned in capture order so panels follow the orbit.
    """
    n = len(poses)
    if k >= n:
        return list(range(n))
    angles = angle_matrix(view_directions(poses))
    if k == 1:
        return [0]
    # Farthest-point sampling from the most distant pair.
    first, second = np.unravel_index(np.argmax(angles), angles.shape)
    chosen = [int(first), int(second)]
    while len(chosen) < k:
        nearest = angles[:, chosen].min(axis=1)
        nearest[chosen] = -1.0
        chosen.append(int(np.argmax(nearest)))
    # Swap refinement: replace one chosen view by any other while that raises the
    # smallest angle (ties: the sum of angles). Always terminates: the score rises.
    best = _score(angles, chosen)
    improved = True
    while improved:
        improved = False
        for slot in range(k):
            for candidate in range(n):
                if candidate in chosen:
                    continue
                trial = chosen[:slot] + [candidate] + chosen[slot + 1 :]
                score = _score(angles, trial)
                better = score[0] > best[0] + 1e-9 or (abs(score[0] - best[0]) <= 1e-9 and score[1] > best[1] + 1e-9)
                if better:
                    chosen, best, improved = trial, score, True
    return sorted(chosen)


def brute_force_best_min_angle(directions: np.ndarray, k: int) -> float:
    """The optimum of the selection objective over all k-subsets (tests and benchmarks)."""
    angles = angle_matrix(directions)
    combos = np.array(list(combinations(range(len(directions)), k)), dtype=np.int32)
    smallest = np.full(len(combos), np.inf)
    for i, j in combinations(range(k), 2):
        smallest = np.minimum(smallest, angles[combos[:, i], combos[:, j]])
    return float(smallest.max())


def select_views_evenly(n: int, k: int, closed_orbit: bool = True) -> list[int]:
    """k frame indices evenly spaced in capture order.

    A full orbit ends where it began (last frame ~ first frame), so the spacing is
    over n-1 steps and the last frame is never chosen beside the first.
    """
    if k >= n:
        return list(range(n))
    span = (n - 1) if closed_orbit else n
    step = span / k if closed_orbit else (n - 1) / max(1, k - 1)
    indices = sorted({min(n - 1, int(round(i * step))) for i in range(k)})
    # Rounding can merge two picks on tiny sets; fill with the nearest unused frames.
    for candidate in range(n):
        if len(indices) >= k:
            break
        if candidate not in indices:
            indices.append(candidate)
    return sorted(indices)


def view_angles(poses: list[CameraPose], chosen: list[int]) -> list[ViewAngle]:
    """Azimuth (relative to the first chosen view) and elevation of each chosen view."""
    directions = view_directions(poses)
    up = -np.mean([pose.down for pose in poses], axis=0)  # phones are held upright on average
    up /= max(np.linalg.norm(up), 1e-12)
    first = directions[chosen[0]]
    ref = first - up * (first @ up)
    ref /= max(np.linalg.norm(ref), 1e-12)
    # The first camera's right vector decides the sign: moving right shows the object's left.
    right = poses[chosen[0]].rotation.T @ np.array([1.0, 0.0, 0.0])
    side = np.cross(up, ref)
    if side @ right < 0:
        side = -side
    out = []
    for index in chosen:
        d = directions[index]
        azimuth = np.degrees(np.arctan2(d @ side, d @ ref))
        elevation = np.degrees(np.arcsin(np.clip(d @ up, -1.0, 1.0)))
        out.append(ViewAngle(azimuth_deg=round(float(azimuth), 2), elevation_deg=round(float(elevation), 2)))
    return out


# --- optional frame rejection -------------------------------------------------


def _thumbnail_grey(path, size: int = 128) -> np.ndarray:
    from .images import load_rgb

    image = load_rgb(path, min_size=(size, size))
    image.thumbnail((size, size))
    return np.asarray(image.convert("L"), dtype=np.float32)


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian: low for blurred frames."""
    lap = -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    return float(lap.var())


def difference_hash(grey: np.ndarray, size: int = 8) -> np.ndarray:
    from PIL import Image

    small = np.asarray(
        Image.fromarray(grey.astype(np.uint8)).resize((size + 1, size), Image.Resampling.BILINEAR), dtype=np.float32
    )
    return (small[:, 1:] > small[:, :-1]).ravel()


def usable_frames(
    paths, reject_blurred: bool, reject_duplicates: bool, blur_ratio: float = 0.35, duplicate_bits: int = 3
) -> list[int]:
    """Indices of frames that are neither blurred (relative to the set) nor near-copies of a kept frame."""
    if not (reject_blurred or reject_duplicates):
        return list(range(len(paths)))
    greys = [_thumbnail_grey(path) for path in paths]
    keep = list(range(len(paths)))
    if reject_blurred:
        scores = np.array([sharpness(g) for g in greys])
        threshold = blur_ratio * float(np.median(scores))
        keep = [i for i in keep if scores[i] >= threshold]
    if reject_duplicates:
        hashes = {i: difference_hash(greys[i]) for i in keep}
        kept: list[int] = []
        for i in keep:
            if kept and int(np.count_nonzero(hashes[i] != hashes[kept[-1]])) <= duplicate_bits:
                continue
            kept.append(i)
        keep = kept
    return keep
