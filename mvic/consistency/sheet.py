"""Pictures of a score: the composite with its numbers on it, and a contact sheet of many."""

from __future__ import annotations

import numpy as np

from .types import ConsistencyScore

GOOD, BAD = np.array([40, 200, 90]), np.array([230, 60, 50])


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _panel_colour(agreement: float) -> tuple[int, int, int]:
    mix = GOOD * agreement + BAD * (1.0 - agreement)
    return tuple(int(v) for v in mix)


def _best_agreement(score: ConsistencyScore) -> list[float]:
    best = [0.0] * score.panels
    for pair in score.pairs:
        if not pair.duplicate:
            best[pair.a] = max(best[pair.a], pair.agreement)
            best[pair.b] = max(best[pair.b], pair.agreement)
    return best


def headline(score: ConsistencyScore) -> str:
    spread = score.spread_deg
    angles = f" | views {spread['min']:.0f}-{spread['max']:.0f} deg apart" if spread else ""
    return f"consistency {score.consistency:.2f} | duplicate pairs {score.duplicate_pairs}{angles}"


def annotate(image: np.ndarray, score: ConsistencyScore, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """The composite (or the views side by side) with a banner of the score and each panel outlined
    in its best agreement's colour (green = agrees with another panel, red = with none);
    panels of one duplicate group carry the same "=N" tag."""
    from PIL import Image, ImageDraw

    height, width = image.shape[:2]
    banner = max(24, width // 28)
    canvas = Image.new("RGB", (width, height + 2 * banner), (24, 24, 24))
    canvas.paste(Image.fromarray(np.ascontiguousarray(image[..., :3])), (0, 2 * banner))
    draw = ImageDraw.Draw(canvas)
    font = _font(int(banner * 0.7))
    draw.text((6, banner * 0.12), headline(score), fill=(235, 235, 235), font=font)
    flag_colour = (250, 190, 90) if score.flags else (150, 200, 150)
    draw.text((6, banner * 1.12), ", ".join(score.flags) or "no flags", fill=flag_colour, font=font)
    line = max(2, width // 256)
    tags = _duplicate_tags(score)
    for index, ((top, bottom, left, right), agreement) in enumerate(zip(boxes, _best_agreement(score))):
        inset, shift = line // 2, 2 * banner
        box = (left + inset, top + shift + inset, right - 1 - inset, bottom + shift - 1 - inset)
        draw.rectangle(box, outline=_panel_colour(agreement), width=line)
        label = f"{index + 1}: {agreement:.2f}" + (f" ={tags[index]}" if index in tags else "")
        draw.text(
            (box[0] + 2 * line, box[1] + 2 * line),
            label,
            fill=(255, 255, 255),
            font=font,
            stroke_width=2,
            stroke_fill=(0, 0, 0),
        )
    return np.asarray(canvas)


def _duplicate_tags(score: ConsistencyScore) -> dict[int, int]:
    tags: dict[int, int] = {}
    for pair in score.pairs:
        if pair.duplicate:
            tag = tags.get(pair.a) or tags.get(pair.b) or len(set(tags.values())) + 1
            tags[pair.a] = tags[pair.b] = tag
    return tags


def views_strip(views: list[np.ndarray], height: int = 256) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Views of any sizes side by side at one height, and each view's box in the strip."""
    from PIL import Image

    scaled = []
    for view in views:
        width = max(1, round(view.shape[1] * height / view.shape[0]))
        image = Image.fromarray(np.ascontiguousarray(view[..., :3]))
        scaled.append(np.asarray(image.resize((width, height), Image.Resampling.BILINEAR)))
    boxes, left = [], 0
    for view in scaled:
        boxes.append((0, height, left, left + view.shape[1]))
        left += view.shape[1]
    return np.concatenate(scaled, axis=1), boxes


def scores_sheet_png(annotated: list[np.ndarray], labels: list[str]) -> bytes:
    """Contact sheet of annotated composites (the dataset contact sheet's layout)."""
    from ..export.contact_sheet import contact_sheet_png

    return contact_sheet_png(annotated, labels, thumb_width=384, columns=4)
