"""The set score: do these panels show one object from several angles?

1. every panel: greyscale at analysis size, a duplicate thumbnail, tilt-simulated RootSIFT
2. every pair: duplicate test; otherwise matches -> fundamental-matrix inliers -> agreement
   1 - exp(-(inliers - chance) / scale) in 0-1, and the relative rotation (essential matrix
   with an assumed focal length, or the known poses)
3. duplicates merge into one view; the distinct views are joined by their strongest
   agreements (maximum spanning tree): agreement = mean edge of that tree, so each view must
   agree with at least one other and the set must hang together, while views 180 degrees
   apart need not match each other
4. consistency = agreement x (distinct views - 1) / (panels - 1) x min(1, smallest rotation /
   too_close_deg): four copies of one view score 0 however well they match, and views a few
   degrees apart score in proportion
"""

from __future__ import annotations

import math
import time
from itertools import combinations

import numpy as np

from .duplicates import aligned_ssim, hash_distance, panel_thumb
from .features import analysis_grey, panel_features
from .grid import check_grid
from .matching import pair_geometry
from .types import (
    FLAG_BLANK,
    FLAG_DISAGREE,
    FLAG_DUPLICATES,
    FLAG_PANEL_ALONE,
    FLAG_TOO_CLOSE,
    ConsistencyScore,
    ConsistencySettings,
    PairResult,
)

DEFAULT_SETTINGS = ConsistencySettings()


def agreement_from_inliers(inliers: int, settings: ConsistencySettings) -> float:
    return 1.0 - math.exp(-max(0.0, inliers - settings.chance_inliers) / settings.inlier_scale)


def pose_rotation_deg(pose_a, pose_b) -> float:
    """Angle of the relative rotation between two known camera poses (CameraPose)."""
    relative = pose_a.rotation @ pose_b.rotation.T
    return float(np.degrees(np.arccos(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))))


def check_views(views: list[np.ndarray]) -> None:
    if len(views) < 2:
        raise ValueError(
            f"consistency needs at least 2 views, got {len(views)}: give a composite with its grid, or more views"
        )
    for index, view in enumerate(views):
        if view.ndim != 3 or view.shape[2] < 3 or view.dtype != np.uint8:
            raise ValueError(f"view {index + 1}: expected an H x W x 3 uint8 image, got {view.shape} {view.dtype}")
        if min(view.shape[:2]) < 32:
            raise ValueError(f"view {index + 1} is {view.shape[1]}x{view.shape[0]}: views need at least 32 px a side")


def score_pairs(views: list[np.ndarray], settings: ConsistencySettings, poses=None):
    """Every panel pair's result, and the indices of blank panels."""
    greys = [analysis_grey(view, settings.analysis_size) for view in views]
    thumbs = [panel_thumb(grey) for grey in greys]
    features = [None] * len(views)  # computed only for panels in a non-duplicate pair
    pairs = []
    for a, b in combinations(range(len(views)), 2):
        pair = PairResult(a, b, phash_distance=hash_distance(thumbs[a], thumbs[b]))
        pair.ssim = aligned_ssim(thumbs[a], thumbs[b])
        similar = pair.phash_distance <= settings.phash_max_distance and pair.ssim >= settings.ssim_min
        pair.duplicate = similar and not (thumbs[a].blank or thumbs[b].blank)
        if not pair.duplicate:  # a copy's geometry says nothing about other angles: skip the expensive part
            for index in (a, b):
                if features[index] is None:
                    features[index] = panel_features(greys[index], settings)
            geometry = pair_geometry(features[a], features[b], settings)
            pair.matches, pair.inliers = geometry.matches, geometry.inliers
            pair.agreement = agreement_from_inliers(geometry.inliers, settings)
            if geometry.rotation_deg is not None:
                pair.rotation_deg, pair.rotation_source = geometry.rotation_deg, "essential"
        if poses is not None and poses[a] is not None and poses[b] is not None:
            pair.rotation_deg, pair.rotation_source = pose_rotation_deg(poses[a], poses[b]), "poses"
        pairs.append(pair)
    return pairs, [i for i, thumb in enumerate(thumbs) if thumb.blank]


def duplicate_groups(count: int, pairs: list[PairResult]) -> list[int]:
    """Group id per panel: panels joined by duplicate pairs share one (union-find)."""
    parent = list(range(count))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pair in pairs:
        if pair.duplicate:
            parent[root(pair.a)] = root(pair.b)
    roots = sorted({root(i) for i in range(count)})
    return [roots.index(root(i)) for i in range(count)]


def spanning_agreement(groups: list[int], pairs: list[PairResult]) -> list[float]:
    """Edges of the maximum spanning tree over distinct views (Prim); weights = best panel-pair agreement."""
    count = max(groups) + 1
    weight = np.zeros((count, count))
    for pair in pairs:
        ga, gb = groups[pair.a], groups[pair.b]
        if ga != gb:
            weight[ga, gb] = weight[gb, ga] = max(weight[ga, gb], pair.agreement)
    inside, edges = {0}, []
    while len(inside) < count:
        best, node = max((weight[i, j], j) for i in inside for j in range(count) if j not in inside)
        edges.append(float(best))
        inside.add(node)
    return edges


def _flags(score: ConsistencyScore, settings: ConsistencySettings) -> list[str]:
    flags = []
    if score.duplicate_pairs:
        flags.append(FLAG_DUPLICATES)
    if score.blank_panels:
        flags.append(FLAG_BLANK)
    if score.spread_deg and score.spread_deg["min"] < settings.too_close_deg:
        flags.append(FLAG_TOO_CLOSE)
    if score.distinct_views > 1 and score.consistency < settings.disagree_below:
        flags.append(FLAG_DISAGREE)
    elif score.lonely_panels:
        flags.append(FLAG_PANEL_ALONE)
    return flags


def _spread(pairs: list[PairResult], settings: ConsistencySettings) -> dict:
    """Rotations of distinct, agreeing pairs (any pair when the poses are known)."""
    angles = [
        p.rotation_deg
        for p in pairs
        if p.rotation_deg is not None
        and not p.duplicate
        and (p.rotation_source == "poses" or p.agreement >= settings.disagree_below)
    ]
    if not angles:
        return {}
    return {"min": float(min(angles)), "median": float(np.median(angles)), "max": float(max(angles))}


def _lonely(count: int, groups: list[int], pairs: list[PairResult], settings: ConsistencySettings) -> list[int]:
    best = [0.0] * count
    for pair in pairs:
        if groups[pair.a] != groups[pair.b]:
            best[pair.a] = max(best[pair.a], pair.agreement)
            best[pair.b] = max(best[pair.b], pair.agreement)
    return [i for i in range(count) if best[i] < settings.lonely_agreement] if max(groups) > 0 else []


def score_views(
    views: list[np.ndarray], settings: ConsistencySettings = DEFAULT_SETTINGS, poses=None, learned=None
) -> ConsistencyScore:
    """Score views of (supposedly) one object. `poses`: a CameraPose or None per view, when known.
    `learned`: a learned.LearnedSimilarity, when the user configured one."""
    check_views(views)
    started = time.perf_counter()
    pairs, blank = score_pairs(views, settings, poses)
    groups = duplicate_groups(len(views), pairs)
    distinct = max(groups) + 1
    edges = spanning_agreement(groups, pairs) if distinct > 1 else []
    agreement = float(np.mean(edges)) if edges else 0.0
    spread = _spread(pairs, settings)
    closeness = min(1.0, spread["min"] / settings.too_close_deg) if spread else 1.0
    score = ConsistencyScore(
        consistency=agreement * (distinct - 1) / (len(views) - 1) * closeness,
        agreement=agreement,
        distinct_views=distinct,
        panels=len(views),
        pairs=pairs,
        lonely_panels=_lonely(len(views), groups, pairs, settings),
        blank_panels=blank,
        spread_deg=spread,
    )
    if learned is not None:
        score.learned_similarity = learned.similarity(views)
        score.learned_note = learned.name
    score.flags = _flags(score, settings)
    score.seconds = time.perf_counter() - started
    return score


def score_composite(
    composite: np.ndarray,
    rows: int,
    cols: int,
    divider_width: int = 0,
    settings: ConsistencySettings = DEFAULT_SETTINGS,
    poses=None,
    learned=None,
) -> ConsistencyScore:
    """Grid check + split (dividers cropped off) + score_views; grid flags join the score's flags."""
    from ..layout import split_boxes

    started = time.perf_counter()
    boxes = split_boxes(composite.shape[0], composite.shape[1], rows, cols)
    d = divider_width
    views = [composite[top + d : bottom - d, left + d : right - d, :3] for top, bottom, left, right in boxes]
    grid = check_grid(composite, rows, cols, divider_width)
    score = score_views(views, settings, poses, learned)
    score.grid = grid
    score.flags += grid.flags
    score.seconds = time.perf_counter() - started
    return score
