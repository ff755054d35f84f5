"""Render a caption from its parts: `<PREFIX> summary; <MARKER> text; ... .`"""
from __future__ import annotations

from ..markers import LayoutMarkers

_TRAILING = " \t;,."


def clean_text(text: str) -> str:
    return " ".join(text.split()).strip(_TRAILING)


def render_caption(markers: LayoutMarkers, summary: str, panel_texts: list[str], trigger: str = "") -> str:
    if len(panel_texts) != len(markers.panels):
        raise ValueError(f"{len(markers.panels)} panels need {len(markers.panels)} panel texts, got {len(panel_texts)}")
    parts = [f"{markers.prefix} {clean_text(summary)}".strip()]
    for marker, text in zip(markers.panels, panel_texts):
        cleaned = clean_text(text)
        if not cleaned:
            raise ValueError(f"panel {marker} has an empty description")
        parts.append(f"{marker} {cleaned}")
    caption = "; ".join(parts) + "."
    return f"{trigger.strip()} {caption}" if trigger.strip() else caption
