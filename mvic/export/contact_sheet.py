"""A contact sheet PNG: every composite of the dataset at a glance, labelled by file stem."""

from __future__ import annotations

import io

import numpy as np


def contact_sheet_png(images: list[np.ndarray], labels: list[str], thumb_width: int = 256, columns: int = 4) -> bytes:
    from PIL import Image, ImageDraw

    if not images:
        images, labels = [np.full((64, 64, 3), 40, np.uint8)], ["(empty dataset)"]
    thumbs = []
    for array in images:
        image = Image.fromarray(array)
        scale = thumb_width / image.width
        thumbs.append(image.resize((thumb_width, max(1, round(image.height * scale))), Image.Resampling.BILINEAR))
    label_h, gap = 16, 8
    cell_h = max(t.height for t in thumbs) + label_h
    cols = min(columns, len(thumbs))
    rows = -(-len(thumbs) // cols)
    sheet = Image.new("RGB", (cols * (thumb_width + gap) + gap, rows * (cell_h + gap) + gap), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (thumb, label) in enumerate(zip(thumbs, labels)):
        x = gap + (i % cols) * (thumb_width + gap)
        y = gap + (i // cols) * (cell_h + gap)
        sheet.paste(thumb, (x, y))
        draw.text((x + 2, y + thumb.height + 2), label[:40], fill=(230, 230, 230))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
