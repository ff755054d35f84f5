"""Render a caption from its parts: `[TRIGGER] <PREFIX> summary; <MARKER> text; ... .`

The canonical form joins parts with `; ` and ends with `.`. Captions written by a
person may use `, ` or `. ` between parts (the public `[MOVIE-SHOTS]` captions
use commas); `join_caption` renders those exactly so a parsed caption can be
written back unchanged.
"""
from __future__ import annotations

from ..markers import LayoutMarkers

_TRAILING = " \t;,."
CANONICAL_SEPARATOR = "; "
CANONICAL_ENDING = "."


def clean_text(text: str) -> str:
    return " ".join(text.split()).strip(_TRAILING)


def join_caption(
    prefix: str,
    summary: str,
    markers: tuple[str, ...] | list[str],
    texts: list[str],
    separators: tuple[str, ...] | list[str] | str = CANONICAL_SEPARATOR,
    ending: str = CANONICAL_ENDING,
    trigger: str = "",
) -> str:
    """Lay out already-clean parts. `separators`: one string, or one per panel marker
    (the separator written before that marker)."""
    if isinstance(separators, str):
        separators = [separators] * len(markers)
    if len(separators) != len(markers):
        raise ValueError(f"{len(markers)} panel markers need {len(markers)} separators, got {len(separators)}")
    caption = " ".join(part for part in (prefix, summary) if part)
    for separator, marker, text in zip(separators, markers, texts):
        caption += f"{separator}{marker} {text}" if caption else f"{marker} {text}"
    caption += ending
    return f"{trigger.strip()} {caption}" if trigger.strip() else caption


def render_caption(
    markers: LayoutMarkers,
    summary: str,
    panel_texts: list[str],
    trigger: str = "",
    separator: str = CANONICAL_SEPARATOR,
) -> str:
    if len(panel_texts) != len(markers.panels):
        raise ValueError(f"{len(markers.panels)} panels need {len(markers.panels)} panel texts, got {len(panel_texts)}")
    texts = []
    for marker, text in zip(markers.panels, panel_texts):
        cleaned = clean_text(text)
        if not cleaned:
            raise ValueError(f"panel {marker} has an empty description")
        texts.append(cleaned)
    return join_caption(markers.prefix, clean_text(summary), markers.panels, texts, separator, CANONICAL_ENDING, trigger)
