"""Near-duplicate panels ("the model repeated one view"): perceptual hash + SSIM.

Both must agree. The DCT hash ignores brightness, noise and small shifts but is coarse; SSIM is
computed on brightness/contrast-normalised thumbnails after aligning them by phase correlation, so
a copy shifted by a few pixels still scores near 1 while another view of the same scene does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HASH_SIDE = 32
HASH_BITS = 8  # 8 x 8 low frequencies, DC dropped: 63 bits
SSIM_SIDE = 128
MAX_ALIGN_PX = 6  # at SSIM_SIDE: about 5% of the panel
SSIM_SIGMA = 1.5
BLANK_STD = 2.0  # grey levels


@dataclass
class PanelThumb:
    """What the duplicate test needs of one panel."""

    bits: np.ndarray  # 63 bools
    grey: np.ndarray  # SSIM_SIDE x SSIM_SIDE float32, zero mean, unit std
    blank: bool  # no content to speak of (then never a duplicate: normalising would amplify noise)


def panel_thumb(grey: np.ndarray) -> PanelThumb:
    import cv2

    small = cv2.resize(grey, (HASH_SIDE, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:HASH_BITS, :HASH_BITS].ravel()[1:]
    thumb = cv2.resize(grey, (SSIM_SIDE, SSIM_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    spread = float(thumb.std())
    thumb = (thumb - thumb.mean()) / (spread + 1e-6)
    return PanelThumb(bits=low > np.median(low), grey=thumb, blank=spread < BLANK_STD)


def hash_distance(a: PanelThumb, b: PanelThumb) -> int:
    return int(np.count_nonzero(a.bits != b.bits))


def aligned_ssim(a: PanelThumb, b: PanelThumb) -> float:
    """Mean SSIM of the normalised thumbnails, b shifted onto a when the shift is small."""
    import cv2

    (dx, dy), _ = cv2.phaseCorrelate(a.grey, b.grey)
    other = b.grey
    if abs(dx) <= MAX_ALIGN_PX and abs(dy) <= MAX_ALIGN_PX:
        shift = np.float32([[1, 0, -dx], [0, 1, -dy]])
        other = cv2.warpAffine(other, shift, (SSIM_SIDE, SSIM_SIDE), borderMode=cv2.BORDER_REPLICATE)
    return ssim(a.grey, other)


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Gaussian-window SSIM (Wang et al. 2004) for images of unit-std scale."""
    import cv2

    c1, c2 = 0.01**2 * 16, 0.03**2 * 16  # the usual constants for a dynamic range of ~4 std

    def blur(image):
        return cv2.GaussianBlur(image, (0, 0), SSIM_SIGMA)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(index.mean())
