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


# --------------------------------------------------------------------------- reading markers back from captions

_CAPTION_MARKER_RE = re.compile(r"\[[A-Z0-9][A-Z0-9_-]*\]")
_NUMBERED_RE = re.compile(r"^\[([A-Z0-9_-]*?[A-Z_-])(\d+)\]$")
KNOWN_TABLES = (
    "[TOP-LEFT] [TOP-RIGHT] …, [LEFT] [RIGHT], [TOP] [BOTTOM], [TOP] [MIDDLE] [BOTTOM], [IMAGE1] …, [ROW1-COL1] …"
)


@dataclass(frozen=True)
class CaptionLayout:
    """What a caption's markers say: its markers, and every rows x cols grid they name."""

    markers: LayoutMarkers
    grids: tuple[tuple[int, int], ...]


def _numbered_pattern(panels: list[str]) -> str:
    """'[SCENE-{n}]' when the panel markers are [SCENE-1] [SCENE-2] …, else ''."""
    matches = [_NUMBERED_RE.match(marker) for marker in panels]
    if not all(matches) or len({m.group(1) for m in matches}) != 1:
        return ""
    if [int(m.group(2)) for m in matches] != list(range(1, len(panels) + 1)):
        return ""
    return f"[{matches[0].group(1)}{{n}}]"


def _no_grid_error(prefix: str, panels: list[str], style: MarkerStyle) -> str:
    named = " ".join(panels)
    repeated = sorted({m for m in panels if panels.count(m) > 1})
    if repeated:
        return f"names {' '.join(repeated)} more than once: each panel marker must appear once"
    if style.panel_pattern.strip():
        wanted = " ".join(markers_for(1, len(panels), MarkerStyle(prefix, style.panel_pattern)).panels)
        return f"has the panel markers {named}, the pattern {style.panel_pattern.strip()} makes {wanted}"
    hint = _numbered_pattern(panels)
    fix = f": give the panel marker pattern {hint}" if hint else ": give your panel marker pattern (e.g. [SCENE-{n}])"
    return f"has the panel markers {named}, which are not a known marker table ({KNOWN_TABLES}){fix}"


def _check_count_prefix(prefix: str, count: int) -> None:
    match = re.fullmatch(r"\[([A-Z]+)-VIEWS\]", prefix)
    if match and match.group(1) in _NUMBER_WORDS and _NUMBER_WORDS.index(match.group(1)) != count:
        raise ValueError(f"starts with {prefix} but names {count} panel(s)")


def _check_panel_texts(text: str, panels: list[str]) -> None:
    rest = text
    for marker in panels:
        rest = rest.split(marker, 1)[1]
        following = rest
        for other in panels:
            following = following.split(other, 1)[0]
        if not re.search(r"\w", following):
            raise ValueError(f"has no words after {marker}")


def caption_layout(text: str, style: MarkerStyle = DEFAULT_STYLE) -> CaptionLayout:
    """Read a marker caption back: its prefix, its panel markers (in order) and the grids they fit.

    A caption names its panels with one of the known tables (`position_markers`) or with
    `style.panel_pattern`; `style.prefix`, when given, must be its first marker. Raises
    ValueError saying what does not fit (the caller names the file)."""
    found = _CAPTION_MARKER_RE.findall(text)
    if not found:
        raise ValueError(
            "has no [MARKERS]: an IC-LoRA caption starts with a prefix like [FOUR-VIEWS] and names each panel"
        )
    prefix, panels = found[0], found[1:]
    wanted_prefix = style.prefix.strip()
    if wanted_prefix and prefix != wanted_prefix:
        raise ValueError(f"starts with {prefix}, not with the marker prefix {wanted_prefix}")
    if not panels:
        raise ValueError(f"has the prefix {prefix} but no panel markers")
    if len(panels) >= len(_NUMBER_WORDS):
        raise ValueError(f"names {len(panels)} panels; at most {len(_NUMBER_WORDS) - 1} are supported")
    _check_count_prefix(prefix, len(panels))
    n = len(panels)
    own = MarkerStyle(prefix, style.panel_pattern)
    grids = tuple(
        (rows, n // rows)
        for rows in range(1, n + 1)
        if n % rows == 0 and markers_for(rows, n // rows, own).panels == tuple(panels)
    )
    if not grids:
        raise ValueError(_no_grid_error(prefix, panels, style))
    _check_panel_texts(text, panels)
    return CaptionLayout(LayoutMarkers(prefix, tuple(panels)), grids)
