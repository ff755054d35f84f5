"""Composite layout: panels of equal size in a rows x cols grid, and its exact inverse.

Panel sides are multiples of 16 so that every panel edge falls on a FLUX latent
patch boundary (8x VAE downscale, 2x2 patches). Dividers are painted over panel
edges instead of adding pixels, so `split(compose(panels))` returns the panels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIT_MODES = ("crop", "pad", "stretch")
ALIGN = 16


def parse_color(color: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """'#rrggbb', 'r,g,b' or a tuple -> an RGB tuple."""
    if isinstance(color, tuple):
        rgb = color
    else:
        text = color.strip()
        try:
            if text.startswith("#") and len(text) == 7:
                rgb = tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))
            else:
                rgb = tuple(int(part) for part in text.split(","))
        except ValueError:
            rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"colour {color!r}: write it as '#rrggbb' or 'r,g,b' with values 0-255")
    return rgb  # type: ignore[return-value]


@dataclass(frozen=True)
class CompositeLayout:
    rows: int
    cols: int
    panel_width: int
    panel_height: int
    divider_width: int = 0
    divider_color: tuple[int, int, int] = (255, 255, 255)

    def __post_init__(self):
        if self.rows < 1 or self.cols < 1:
            raise ValueError(f"layout {self.rows}x{self.cols}: rows and cols must be at least 1")
        for name, value in (("panel_width", self.panel_width), ("panel_height", self.panel_height)):
            if value < ALIGN or value % ALIGN:
                raise ValueError(
                    f"{name} = {value}: panel sides must be positive multiples of {ALIGN} "
                    f"(try {max(ALIGN, round(value / ALIGN) * ALIGN)})"
                )
        if self.divider_width < 0 or self.divider_width * 2 >= min(self.panel_width, self.panel_height):
            raise ValueError(f"divider_width = {self.divider_width}: use 0 (none) or a small even number of pixels")

    @property
    def count(self) -> int:
        return self.rows * self.cols

    @property
    def width(self) -> int:
        return self.cols * self.panel_width

    @property
    def height(self) -> int:
        return self.rows * self.panel_height

    def panel_origin(self, index: int) -> tuple[int, int]:
        """(x, y) of panel `index` in reading order."""
        row, col = divmod(index, self.cols)
        return col * self.panel_width, row * self.panel_height

    def divider_mask(self, index: int) -> np.ndarray:
        """Pixels of panel `index` that a divider covers (edges shared with a neighbour).

        A divider of width d is split floor(d/2) / ceil(d/2) across each inner boundary.
        """
        mask = np.zeros((self.panel_height, self.panel_width), dtype=bool)
        d = self.divider_width
        if d == 0:
            return mask
        before, after = d // 2, d - d // 2  # pixels on the left/top side, right/bottom side
        row, col = divmod(index, self.cols)
        if col > 0:
            mask[:, :after] = True
        if col < self.cols - 1 and before:
            mask[:, self.panel_width - before :] = True
        if row > 0:
            mask[:after, :] = True
        if row < self.rows - 1 and before:
            mask[self.panel_height - before :, :] = True
        return mask

    def describe(self) -> dict:
        return {
            "rows": self.rows,
            "cols": self.cols,
            "panel_width": self.panel_width,
            "panel_height": self.panel_height,
            "width": self.width,
            "height": self.height,
            "divider_width": self.divider_width,
        }


def fit_panel(image, width: int, height: int, mode: str = "crop", pad_color=(0, 0, 0)):
    """Fit a PIL RGB image to width x height: centre `crop`, letterbox `pad`, or `stretch`."""
    from PIL import Image

    if mode not in FIT_MODES:
        raise ValueError(f"fit mode {mode!r}: choose one of {', '.join(FIT_MODES)}")
    src_w, src_h = image.size
    if mode == "stretch":
        return image.resize((width, height), Image.Resampling.LANCZOS)
    if mode == "crop":
        scale = max(width / src_w, height / src_h)
        crop_w, crop_h = min(src_w, width / scale), min(src_h, height / scale)
        # Clamp: float rounding can make the offset -1e-15, which PIL rejects.
        left, top = max(0.0, (src_w - crop_w) / 2), max(0.0, (src_h - crop_h) / 2)
        box = (left, top, left + crop_w, top + crop_h)
        return image.resize((width, height), Image.Resampling.LANCZOS, box=box)
    scale = min(width / src_w, height / src_h)
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    canvas = Image.new("RGB", (width, height), tuple(pad_color))
    canvas.paste(image.resize((new_w, new_h), Image.Resampling.LANCZOS), ((width - new_w) // 2, (height - new_h) // 2))
    return canvas


def compose(panels: list[np.ndarray], layout: CompositeLayout) -> np.ndarray:
    """Paste H x W x 3 uint8 panels in reading order, then paint the dividers."""
    if len(panels) != layout.count:
        raise ValueError(f"layout {layout.rows}x{layout.cols} needs {layout.count} panels, got {len(panels)}")
    out = np.empty((layout.height, layout.width, 3), dtype=np.uint8)
    color = np.asarray(layout.divider_color, dtype=np.uint8)
    for index, panel in enumerate(panels):
        if panel.shape != (layout.panel_height, layout.panel_width, 3):
            raise ValueError(
                f"panel {index} is {panel.shape}, the layout needs "
                f"{(layout.panel_height, layout.panel_width, 3)}: fit it first"
            )
        x, y = layout.panel_origin(index)
        view = out[y : y + layout.panel_height, x : x + layout.panel_width]
        view[:] = panel
        if layout.divider_width:
            view[layout.divider_mask(index)] = color
    return out


def split_boxes(height: int, width: int, rows: int, cols: int) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) of each panel in reading order."""
    if rows < 1 or cols < 1 or height % rows or width % cols:
        raise ValueError(
            f"a {width}x{height} image does not split into {rows} rows x {cols} cols of equal panels; "
            "set rows/cols to the layout the composite was made with"
        )
    ph, pw = height // rows, width // cols
    return [(r * ph, (r + 1) * ph, c * pw, (c + 1) * pw) for r in range(rows) for c in range(cols)]


def split(composite: np.ndarray, rows: int, cols: int) -> list[np.ndarray]:
    """Cut a composite back into its rows x cols panels, in reading order."""
    return [composite[t:b, l:r].copy() for t, b, l, r in split_boxes(*composite.shape[:2], rows, cols)]
