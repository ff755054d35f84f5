"""Local features of one panel: RootSIFT on the panel and on horizontally foreshortened copies.

Views 60-90 degrees apart see the same surface under very different foreshortening, beyond what
SIFT's own invariance covers. ASIFT's remedy is to also describe affine-simulated copies of the
image; for views around an upright object the dominant change is horizontal (vertical faces turn
away, the ground plane turns under a fixed tilt), so we simulate horizontal compressions only:
a few extra small images, about 1.6x the cost of plain SIFT. Keypoints map back to the panel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .types import ConsistencySettings


@dataclass
class PanelFeatures:
    points: np.ndarray  # N x 2 float32, in analysis pixels
    descriptors: np.ndarray  # N x 128 float32 RootSIFT (empty: N = 0)
    size: tuple[int, int]  # analysis (width, height)


def analysis_grey(panel: np.ndarray, longest_side: int) -> np.ndarray:
    """H x W x 3 uint8 -> greyscale uint8 whose longest side is `longest_side` (never upscaled)."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(panel[..., :3]), cv2.COLOR_RGB2GRAY)
    scale = longest_side / max(grey.shape)
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


def _foreshortened(grey: np.ndarray, tilt: float) -> np.ndarray:
    import cv2

    if tilt == 1.0:
        return grey
    # Anti-alias along x before subsampling by `tilt` (ASIFT's 0.8 * sqrt(t^2 - 1)).
    blurred = cv2.GaussianBlur(grey, (0, 0), sigmaX=0.8 * np.sqrt(tilt * tilt - 1), sigmaY=0.01)
    width = max(8, round(grey.shape[1] / tilt))
    return cv2.resize(blurred, (width, grey.shape[0]), interpolation=cv2.INTER_LINEAR)


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """Hellinger-normalised SIFT (Arandjelovic & Zisserman 2012): L2 matching of these is better."""
    l1 = descriptors / (np.abs(descriptors).sum(axis=1, keepdims=True) + 1e-7)
    return np.sqrt(l1).astype(np.float32)


def panel_features(grey: np.ndarray, settings: ConsistencySettings) -> PanelFeatures:
    import cv2

    sift = cv2.SIFT_create(contrastThreshold=settings.contrast_threshold)
    points, descriptors = [], []
    for tilt in settings.tilts:
        image = _foreshortened(grey, tilt)
        keypoints, desc = sift.detectAndCompute(image, None)
        if desc is None or not keypoints:
            continue
        xy = np.array([kp.pt for kp in keypoints], dtype=np.float32)
        xy[:, 0] *= grey.shape[1] / image.shape[1]
        points.append(xy)
        descriptors.append(root_sift(desc))
    if not points:
        return PanelFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), grey.shape[::-1])
    return PanelFeatures(np.concatenate(points), np.concatenate(descriptors), grey.shape[::-1])
