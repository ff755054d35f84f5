"""Sampling plan: the composite layout (from the LoRA's metadata when it has ours), the
marker prompt, and where reference images go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..captions.text import render_caption
from ..layout import CompositeLayout, compose, fit_panel
from ..lora_file import IcLoraInfo, check_layout_bounds, iclora_info, read_iclora_info
from ..markers import DEFAULT_STYLE, LayoutMarkers, MarkerStyle, markers_for

DEFAULT_LAYOUT = CompositeLayout(2, 2, 512, 512)


@dataclass(frozen=True)
class LoraDefaults:
    """What our trainer wrote into the LoRA's safetensors header (all optional), validated."""

    layout: CompositeLayout | None = None
    markers: LayoutMarkers | None = None
    trigger: str = ""

    @classmethod
    def from_info(cls, info: IcLoraInfo) -> "LoraDefaults":
        layout = CompositeLayout(*info.layout) if info.layout else None
        markers = LayoutMarkers(prefix=info.markers[0], panels=info.markers[1]) if info.markers else None
        return cls(layout=layout, markers=markers, trigger=info.trigger)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str = "(metadata)") -> "LoraDefaults":
        """Raises LoraMetadataError naming `source` and the field for malformed or oversized metadata."""
        return cls.from_info(iclora_info(metadata, source))

    @classmethod
    def from_lora(cls, path: str | Path | None) -> "LoraDefaults":
        """The LoRA file's defaults (none without a LoRA); its header is read, never its tensors."""
        return cls.from_info(read_iclora_info(path)) if path else cls()


def resolve_layout(
    rows: int, cols: int, panel_width: int, panel_height: int, defaults: LoraDefaults
) -> CompositeLayout:
    """0 means 'as the LoRA was trained' (else 2x2 of 512). The result is bounded like LoRA metadata
    (<= 64 panels, sides <= 4096, <= 16 MP) before anything is allocated for it."""
    base = defaults.layout or DEFAULT_LAYOUT
    rows, cols = rows or base.rows, cols or base.cols
    panel_width, panel_height = panel_width or base.panel_width, panel_height or base.panel_height
    check_layout_bounds(rows, cols, panel_width, panel_height, "ICLoRASampler layout")
    return CompositeLayout(rows, cols, panel_width, panel_height)


def resolve_markers(
    layout: CompositeLayout, defaults: LoraDefaults, style: MarkerStyle = DEFAULT_STYLE
) -> LayoutMarkers:
    if (
        style == DEFAULT_STYLE
        and defaults.markers
        and defaults.layout
        and (defaults.layout.rows, defaults.layout.cols) == (layout.rows, layout.cols)
    ):
        return defaults.markers  # the LoRA's own words, custom styles included
    return markers_for(layout.rows, layout.cols, style)


def assemble_prompt(text: str, panel_lines: str, markers: LayoutMarkers, trigger: str = "") -> str:
    """A full marker caption is used as written; otherwise `text` is the summary and
    `panel_lines` gives one description per panel (reading order)."""
    text = " ".join(text.split())
    lines = [line.strip() for line in panel_lines.splitlines() if line.strip()]
    if markers.prefix in text and all(marker in text for marker in markers.panels):
        prompt = text
    else:
        if len(lines) != len(markers.panels):
            raise ValueError(
                f"the prompt has no {markers.prefix} caption and panel_prompts has {len(lines)} line(s): "
                f"write a full caption with {' '.join(markers.panels)}, or one line per panel ({len(markers.panels)})"
            )
        prompt = render_caption(markers, text or "This set of images shows one subject from different angles", lines)
    if trigger and not prompt.startswith(trigger):
        prompt = f"{trigger} {prompt}"
    return prompt


def parse_panel_list(text: str, count: int) -> list[int]:
    """'1,3' -> [0, 2] (1-based in the UI, reading order)."""
    panels = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= count:
            raise ValueError(
                f"reference_panels {text!r}: list panel numbers 1..{count} separated by commas, e.g. 1 or 1,4"
            )
        panels.append(int(part) - 1)
    if len(set(panels)) != len(panels):
        raise ValueError(f"reference_panels {text!r} names a panel twice")
    return panels


@dataclass
class ReferencePlan:
    composite: np.ndarray  # H x W x 3 uint8: references in their panels, grey elsewhere
    generate_mask: np.ndarray  # H x W float32: 1 = generate, 0 = keep the reference
    panels: list[int]


def plan_references(
    references: list[np.ndarray], panels: list[int], layout: CompositeLayout, fit: str = "crop", seam_blend: int = 0
) -> ReferencePlan:
    """Fit reference images into their panels (as CompositeGrid does) and build the mask.

    Masks are aligned to 16 px (FLUX latent patches) by construction since panels are.
    A seam blend softens the mask only on the generated side, so reference pixels stay
    exactly 0 in the mask and come back unchanged."""
    from PIL import Image

    if len(references) != len(panels):
        raise ValueError(
            f"{len(references)} reference image(s) for {len(panels)} reference panel(s): give one image per listed "
            "panel"
        )
    if len(panels) >= layout.count:
        raise ValueError("every panel is a reference: leave at least one panel to generate")
    grey = np.full((layout.panel_height, layout.panel_width, 3), 127, np.uint8)
    tiles = [grey] * layout.count
    mask = np.ones((layout.height, layout.width), np.float32)
    for image, index in zip(references, panels):
        tiles[index] = np.asarray(fit_panel(Image.fromarray(image), layout.panel_width, layout.panel_height, fit))
        x, y = layout.panel_origin(index)
        mask[y : y + layout.panel_height, x : x + layout.panel_width] = 0.0
    if seam_blend > 0:
        mask = _soften_generated_side(mask, seam_blend)
    return ReferencePlan(compose(tiles, layout), mask, panels)


def _soften_generated_side(mask: np.ndarray, width: int) -> np.ndarray:
    """Ramp the generate-mask from 0 up to 1 over `width` pixels next to reference panels
    (chessboard distance by repeated dilation; widths are small)."""
    keep = mask == 0.0
    distance = np.full(mask.shape, width, np.float32)
    frontier = keep.copy()
    for step in range(1, width):
        grown = frontier.copy()
        grown[1:, :] |= frontier[:-1, :]
        grown[:-1, :] |= frontier[1:, :]
        grown[:, 1:] |= frontier[:, :-1]
        grown[:, :-1] |= frontier[:, 1:]
        distance[grown & ~frontier] = step
        frontier = grown
    out = np.minimum(1.0, distance / float(width)).astype(np.float32)
    out[keep] = 0.0
    return out
