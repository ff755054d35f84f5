"""Decode any image a user points us at into RGB, cheaply and safely.

- JPEGs are decoded reduced (PIL `draft`) straight to about the size we need:
  that is most of the speed-up over decode-then-resize, and it keeps a 20000-px
  photo from blowing up memory.
- EXIF orientation is applied (phones store portrait frames rotated).
- Every PIL mode becomes RGB the right way: alpha is flattened onto a
  background, 16-bit greyscale is scaled rather than clipped.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

# Decoded images larger than this (pixels) are refused; JPEGs are drafted below it first.
MAX_DECODED_PIXELS = 64_000_000


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file and the fix."""


def _open(path: Path):
    from PIL import Image, JpegImagePlugin

    try:
        return Image.open(path)
    except Image.DecompressionBombError:
        # Huge JPEGs are fine: we decode them reduced. Open without the bomb check.
        try:
            return JpegImagePlugin.JpegImageFile(str(path))
        except Exception:
            raise ImageError(
                f"{path}: image is too large to decode safely; downscale it below "
                f"{MAX_DECODED_PIXELS // 1_000_000} megapixels"
            ) from None


def load_rgb(path: str | Path, min_size: tuple[int, int] | None = None, background=(255, 255, 255)):
    """Open `path` as an upright RGB PIL image.

    `min_size` (w, h): the caller needs at least this many pixels on each side after
    fitting, so a JPEG may be decoded at 1/2, 1/4 or 1/8 scale as long as it stays
    at least that large (both orientations are considered since EXIF may rotate).
    """
    from PIL import ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        image = _open(path)
        if image.format == "JPEG":
            if min_size:
                # draft() keeps the result >= the requested size; rotation by EXIF
                # can swap sides, so ask for the larger side on both axes.
                need = max(min_size)
                image.draft("RGB", (need, need))
            elif image.width * image.height > MAX_DECODED_PIXELS:
                # JPEG decodes at 1/2, 1/4 or 1/8: take the mildest one that fits.
                factor = next((f for f in (2, 4, 8) if image.width * image.height / f**2 <= MAX_DECODED_PIXELS), 8)
                image.draft("RGB", (-(-image.width // factor), -(-image.height // factor)))
        if image.width * image.height > MAX_DECODED_PIXELS:
            raise ImageError(
                f"{path}: {image.width}x{image.height} is too large to decode safely; "
                f"downscale it below {MAX_DECODED_PIXELS // 1_000_000} megapixels"
            )
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when upright
        return to_rgb(image, background)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc}); re-export or remove the file") from None


def to_rgb(image, background=(255, 255, 255)):
    """Convert any PIL mode to RGB (alpha flattened onto `background`)."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(1.0, float(array.max()))
        if mode == "F" and array.max() <= 1.0:
            top = 1.0
        grey = np.clip(np.round(array / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("LA", "PA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, tuple(background))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def to_array(image) -> np.ndarray:
    return np.asarray(image, dtype=np.uint8)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def array_sha256(array: np.ndarray) -> str:
    digest = hashlib.sha256()
    digest.update(repr((array.shape, str(array.dtype))).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
