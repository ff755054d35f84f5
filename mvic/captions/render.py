"""Render a caption from its parts: `[TRIGGER] <PREFIX> summary; <MARKER> text; ... .`

The canonical form joins parts with `; ` and ends with `.`. Captions written by a
person may use `, ` or `. ` between parts (the public `[MOVIE-SHOTS]` captions
use commas); `join_caption` renders those exactly so a parsed caption can be
written back unchanged.
"""
from __future__ import annotations

import re
import unicodedata

from ..markers import LayoutMarkers

_TRAILING = " \t;,."
CANONICAL_SEPARATOR = "; "
CANONICAL_ENDING = "."
MAX_CAPTION_CHARS = 4096  # FLUX's T5 reads 512 tokens (~2,000 characters); the rest is never trained on
# Bidi embeddings/overrides/isolates: invisible, and they make a caption read differently than it is stored.
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def clean_text(text: str) -> str:
    return " ".join(text.split()).strip(_TRAILING)


def plain_text(text: str) -> str:
    """Text from a model, a folder name or a widget, fit for a caption file: control
    characters (NUL, ESC, DEL, C1...), lone surrogates and bidi controls removed, line
    breaks and tabs as spaces, whitespace collapsed."""
    text = _BIDI_CONTROLS.sub("", text)
    out = []
    for char in text:
        category = unicodedata.category(char)
        if char.isspace() or category in ("Zl", "Zp"):
            out.append(" ")
        elif category not in ("Cc", "Cs"):
            out.append(char)
    return clean_text("".join(out))


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word boundary when one is near the end."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space >= limit * 0.7:
        cut = cut[:space]
    return clean_text(cut) or text[:limit]


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
    max_chars: int = MAX_CAPTION_CHARS,
) -> str:
    """The canonical caption, as plain text of at most `max_chars` characters: when the parts
    are too long, the longest descriptions are shortened first; markers are never cut."""
    if len(panel_texts) != len(markers.panels):
        raise ValueError(f"{len(markers.panels)} panels need {len(markers.panels)} panel texts, got {len(panel_texts)}")
    texts = []
    for marker, text in zip(markers.panels, panel_texts):
        cleaned = _no_brackets(plain_text(text))
        if not cleaned:
            raise ValueError(f"panel {marker} has an empty description")
        texts.append(cleaned)
    parts = [_no_brackets(plain_text(summary)), *texts]
    trigger = plain_text(trigger)

    def render(parts: list[str]) -> str:
        return join_caption(markers.prefix, parts[0], markers.panels, parts[1:], separator, CANONICAL_ENDING, trigger)

    caption = render(parts)
    if len(caption) <= max_chars:
        return caption
    return render(_fit(parts, max_chars - (len(caption) - sum(map(len, parts))), markers))


def _no_brackets(text: str) -> str:
    """Square brackets are the markers' alone: a folder named 'mug [TOP-LEFT]' must not add one."""
    return text.replace("[", "(").replace("]", ")")


def _fit(parts: list[str], room: int, markers: LayoutMarkers) -> list[str]:
    """Shorten the parts so their lengths add up to at most `room`: one common limit for
    every part that is longer (the short ones keep their words)."""
    if room < len(parts):
        raise ValueError(
            f"the markers ({markers.prefix} {' '.join(markers.panels)}) and trigger leave no room for text "
            f"in a caption of at most {MAX_CAPTION_CHARS} characters; use shorter markers or a shorter trigger"
        )
    low, high = 1, max(map(len, parts))
    while low < high:  # the largest limit that fits
        middle = (low + high + 1) // 2
        if sum(min(len(p), middle) for p in parts) <= room:
            low = middle
        else:
            high = middle - 1
    return [shorten(p, low) if p else p for p in parts]
