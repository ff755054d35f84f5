"""Two panels: putative matches, the fundamental matrix's inliers, and the relative rotation.

nearest neighbours (exact L2, RootSIFT) -> ratio test against the nearest descriptor from another
image location -> one match per 4 px cell on each side (no many-to-one "hub" that a
fundamental matrix explains with its epipole) -> USAC MAGSAC++ (RANSAC where older OpenCV lacks
it) -> on the inliers, the essential matrix under an assumed focal length -> rotation angle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import PanelFeatures
from .types import ConsistencySettings

NEIGHBOURS = 4
SAME_PLACE_PX = 4.0  # two descriptors this close are one feature seen at two simulated tilts
CELL_PX = 4.0
MIN_MATCHES = 8
RANSAC_CONFIDENCE = 0.999
RANSAC_ITERATIONS = 5000


@dataclass
class Matches:
    a: np.ndarray  # M x 2 points in panel a
    b: np.ndarray  # M x 2 points in panel b


@dataclass
class Geometry:
    matches: int
    inliers: int
    rotation_deg: float | None = None


def putative_matches(fa: PanelFeatures, fb: PanelFeatures, settings: ConsistencySettings) -> Matches:
    import cv2

    empty = Matches(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32))
    k = min(NEIGHBOURS, len(fb.descriptors))
    if len(fa.descriptors) == 0 or k < 2:
        return empty
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(fa.descriptors, fb.descriptors, k=k)
    index = np.array([[m.trainIdx for m in row] + [row[0].trainIdx] * (k - len(row)) for row in knn])
    dist = np.array([[m.distance for m in row] + [np.inf] * (k - len(row)) for row in knn])
    where = fb.points[index]  # N x k x 2
    elsewhere = np.linalg.norm(where[:, 1:] - where[:, :1], axis=2) > SAME_PLACE_PX
    second = np.take_along_axis(dist[:, 1:], np.argmax(elsewhere, axis=1)[:, None], axis=1)[:, 0]
    # No neighbour from another location: the feature is unique in b, the ratio test passes.
    ratio = np.where(elsewhere.any(axis=1), dist[:, 0] / np.maximum(second, 1e-9), 0.0)
    keep = np.flatnonzero(ratio < settings.ratio)
    keep = keep[np.argsort(ratio[keep], kind="stable")]
    a, b = fa.points[keep], fb.points[index[keep, 0]]
    chosen = _one_per_cell(a) & _one_per_cell(b)
    # A second pass: a match dropped for its b-cell must not block a later one in its a-cell.
    a, b = a[chosen], b[chosen]
    chosen = _one_per_cell(a) & _one_per_cell(b)
    return Matches(a[chosen], b[chosen])


def _one_per_cell(points: np.ndarray) -> np.ndarray:
    """True for the first point (best ratio, since sorted) in each CELL_PX cell."""
    cells = np.floor(points / CELL_PX).astype(np.int64)
    keys = cells[:, 0] * 1_000_003 + cells[:, 1]
    first = np.zeros(len(points), bool)
    first[np.unique(keys, return_index=True)[1]] = True
    return first


def _fundamental_mask(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    import cv2

    method = getattr(cv2, "USAC_MAGSAC", cv2.FM_RANSAC)
    cv2.setRNGSeed(0)  # the same panels give the same score
    _, mask = cv2.findFundamentalMat(a, b, method, threshold, RANSAC_CONFIDENCE, RANSAC_ITERATIONS)
    return np.zeros(len(a), bool) if mask is None else mask.ravel().astype(bool)


def rotation_from_essential(a: np.ndarray, b: np.ndarray, size_a, size_b, settings: ConsistencySettings):
    """Relative rotation (degrees) of two cameras with the assumed focal length, from inlier matches.
    Points are normalised per panel, so panels of different sizes work too."""
    import cv2

    if len(a) < MIN_MATCHES:
        return None
    focal_a, focal_b = settings.focal_factor * max(size_a), settings.focal_factor * max(size_b)
    na = ((a - np.float32(size_a) / 2) / focal_a).astype(np.float64)
    nb = ((b - np.float32(size_b) / 2) / focal_b).astype(np.float64)
    cv2.setRNGSeed(0)
    threshold = settings.ransac_threshold / min(focal_a, focal_b)
    essential, mask = cv2.findEssentialMat(na, nb, np.eye(3), cv2.RANSAC, RANSAC_CONFIDENCE, threshold)
    if essential is None or essential.shape != (3, 3):
        return None
    _, rotation, _, _ = cv2.recoverPose(essential, na, nb, np.eye(3), mask=mask)
    cosine = (np.trace(rotation) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def pair_geometry(fa: PanelFeatures, fb: PanelFeatures, settings: ConsistencySettings) -> Geometry:
    matches = putative_matches(fa, fb, settings)
    count = len(matches.a)
    if count < MIN_MATCHES:
        return Geometry(count, 0)
    inlier = _fundamental_mask(matches.a, matches.b, settings.ransac_threshold)
    inliers = int(inlier.sum())
    if inliers <= settings.chance_inliers:  # no geometry to speak of: no rotation either
        return Geometry(count, inliers)
    rotation = rotation_from_essential(matches.a[inlier], matches.b[inlier], fa.size, fb.size, settings)
    return Geometry(count, inliers, rotation)
