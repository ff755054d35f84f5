"""Stage: multi-view consistency scores (weight-free, CPU): do a set's panels show one object from
several angles? Geometric agreement per panel pair (SIFT + fundamental matrix), near-duplicate
panels, viewpoint spread, grid validity, and optional learned similarity from local weights.

OpenCV (opencv-python-headless) is imported only when something is scored."""

from .score import score_composite, score_views
from .types import ConsistencyScore, ConsistencySettings, GridCheck, PairResult

__all__ = ["ConsistencyScore", "ConsistencySettings", "GridCheck", "PairResult", "score_composite", "score_views"]
