"""The marker table: the one place that says which markers name a layout's panels.

IC-LoRA learns the panel structure from these words, so the captioner, the dataset
saver and the sampler must agree on them exactly; they all call `markers_for`.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass

_NUMBER_WORDS = (
    "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN "
    "FOURTEEN FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN TWENTY"
).split()

# Named position markers for the layouts the public IC-LoRA captions use.
_NAMED_POSITIONS: dict[tuple[int, int], tuple[str, ...]] = {
    (2, 2): ("TOP-LEFT", "TOP-RIGHT", "BOTTOM-LEFT", "BOTTOM-RIGHT"),
    (1, 2): ("LEFT", "RIGHT"),
    (2, 1): ("TOP", "BOTTOM"),
    (3, 1): ("TOP", "MIDDLE", "BOTTOM"),
}

_MARKER_RE = re.compile(r"^\[[A-Z0-9][A-Z0-9_-]*\]$")

# A style arrives in a workflow (untrusted): fields {n} / {row} / {col} only, with an
# optional fill/align/zero flag and a width of at most 3 (`{n:0>50000000}` would make a
# 50 MB marker in every caption).
PATTERN_FIELDS = ("n", "row", "col")
_FORMAT_SPEC_RE = re.compile(r"^(?:[0-9A-Z_-]?[<>^=])?0?[1-3]?$")
MAX_MARKER_CHARS = 64


def number_word(n: int) -> str:
    if not 0 <= n < len(_NUMBER_WORDS):
        raise ValueError(f"panel count {n} is outside 0..{len(_NUMBER_WORDS) - 1}")
    return _NUMBER_WORDS[n]


def count_prefix(n: int) -> str:
    """`[FOUR-VIEWS]` for 4 panels (number in words)."""
    return f"[{number_word(n)}-VIEWS]"


def position_markers(rows: int, cols: int) -> list[str]:
    """Default panel markers in reading order (row by row)."""
    if rows < 1 or cols < 1:
        raise ValueError(f"layout {rows}x{cols}: rows and cols must be at least 1")
    named = _NAMED_POSITIONS.get((rows, cols))
    if named:
        return [f"[{name}]" for name in named]
    if rows == 1 or cols == 1:
        return [f"[IMAGE{i}]" for i in range(1, rows * cols + 1)]
    return [f"[ROW{r}-COL{c}]" for r in range(1, rows + 1) for c in range(1, cols + 1)]


@dataclass(frozen=True)
class MarkerStyle:
    """A user-defined marker style, e.g. prefix `[MOVIE-SHOTS]`, panels `[SCENE-{n}]`.

    `panel_pattern` may use `{n}` (1-based reading order), `{row}` and `{col}`.
    Empty strings mean "use the default".
    """

    prefix: str = ""
    panel_pattern: str = ""


DEFAULT_STYLE = MarkerStyle()


@dataclass(frozen=True)
class LayoutMarkers:
    prefix: str
    panels: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"prefix": self.prefix, "panels": list(self.panels)}


def _check_marker(marker: str, what: str) -> str:
    if not _MARKER_RE.match(marker):
        raise ValueError(
            f"{what} {marker!r} is not a marker: use upper-case letters, digits and '-' "
            "inside square brackets, e.g. [MOVIE-SHOTS] or [SCENE-{n}]"
        )
    return marker


def check_panel_pattern(pattern: str) -> str:
    """The pattern, if it only uses {n} / {row} / {col} with widths <= 3; else ValueError naming the part."""
    hint = "use {n}, {row} or {col}, optionally with a width of at most 3, e.g. [SCENE-{n}] or [V{n:02}]"
    if len(pattern) > MAX_MARKER_CHARS:
        raise ValueError(f"panel marker pattern is {len(pattern)} characters long (at most {MAX_MARKER_CHARS}): {hint}")
    try:
        fields = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise ValueError(f"panel marker pattern {pattern!r} is malformed ({exc}): {hint}") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PATTERN_FIELDS or conversion or not _FORMAT_SPEC_RE.match(spec or ""):
            field = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"panel marker pattern {pattern!r}: field {field[:40]!r} is not allowed: {hint}")
    return pattern


def markers_for(rows: int, cols: int, style: MarkerStyle = DEFAULT_STYLE) -> LayoutMarkers:
    count = rows * cols
    if len(style.prefix.strip()) > MAX_MARKER_CHARS:
        raise ValueError(f"marker prefix is {len(style.prefix.strip())} characters long (at most {MAX_MARKER_CHARS})")
    prefix = _check_marker(style.prefix.strip(), "marker prefix") if style.prefix.strip() else count_prefix(count)
    if style.panel_pattern.strip():
        pattern = check_panel_pattern(style.panel_pattern.strip())
        panels = []
        for r in range(1, rows + 1):
            for c in range(1, cols + 1):
                n = (r - 1) * cols + c
                panels.append(_check_marker(pattern.format(n=n, row=r, col=c), "panel marker"))
        if len(set(panels)) != count:
            raise ValueError(
                f"panel marker pattern {pattern!r} gives the same marker to two panels; "
                "use {n} or both {row} and {col}"
            )
    else:
        panels = position_markers(rows, cols)
    return LayoutMarkers(prefix=prefix, panels=tuple(panels))
