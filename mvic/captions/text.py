"""The caption text codec: one module that writes and reads the marker caption
`[TRIGGER] <PREFIX> summary; <MARKER> text; ... .` (the saver, the trainer and the sampler use it).

Rendering: the canonical form joins parts with `; ` and ends with `.`. Captions written by a
person may use `, ` or `. ` between parts (the public `[MOVIE-SHOTS]` captions use commas);
`join_caption` renders those exactly so a parsed caption can be written back unchanged.

Parsing: IC-LoRA learns the panel structure from the markers, so a caption is valid only
when every marker the layout expects occurs exactly once, in order, with non-empty text,
and no other marker appears. The text between markers is free: it may contain commas,
semicolons and `<Name>` tags; the separator before each marker may be `;`, `,` or `.` and
is kept, so `parsed.render()` writes the caption back exactly (whitespace normalised).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace

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


# Reading a caption back

MARKER_TOKEN = re.compile(r"\[[A-Z0-9][A-Z0-9_-]*\]")
NAME_TAG = re.compile(r"<([^<>\s][^<>]*)>")

# Two-panel captions in the wild use positions or numbers; both teach the same layout.
_TWO_PANEL_ALTERNATIVES: dict[tuple[str, ...], tuple[tuple[str, ...], ...]] = {
    ("[LEFT]", "[RIGHT]"): (("[IMAGE1]", "[IMAGE2]"),),
    ("[TOP]", "[BOTTOM]"): (("[IMAGE1]", "[IMAGE2]"),),
    ("[IMAGE1]", "[IMAGE2]"): (("[LEFT]", "[RIGHT]"),),
}


class CaptionParseError(ValueError):
    """A caption that does not match its layout's markers; the message lists every problem."""

    def __init__(self, caption: str, problems: list[str]):
        self.problems = problems
        shown = caption if len(caption) <= 160 else caption[:157] + "..."
        super().__init__(f"caption {shown!r} does not match its layout: " + "; ".join(problems))


@dataclass(frozen=True)
class ParsedCaption:
    trigger: str
    prefix: str  # "" when the caption has none (only accepted with require_prefix=False)
    summary: str
    markers: tuple[str, ...]  # panel markers as written (maybe the [IMAGE1]/[IMAGE2] alternative)
    texts: tuple[str, ...]
    separators: tuple[str, ...]  # the separator written before each panel marker
    ending: str  # punctuation after the last panel text, e.g. "."

    @property
    def names(self) -> list[str]:
        """`<Name>` tags in order of first appearance (without the brackets)."""
        seen: dict[str, None] = {}
        for part in (self.summary, *self.texts):
            for name in NAME_TAG.findall(part):
                seen.setdefault(name, None)
        return list(seen)

    def render(self) -> str:
        """The caption as it was written (whitespace normalised)."""
        return join_caption(
            self.prefix, self.summary, self.markers, list(self.texts), self.separators, self.ending, self.trigger
        )

    def canonical(
        self, markers: LayoutMarkers, trigger: str | None = None, separator: str = CANONICAL_SEPARATOR
    ) -> str:
        """The same content in this pack's canonical form for `markers`."""
        return render_caption(
            markers, self.summary, list(self.texts), self.trigger if trigger is None else trigger, separator
        )


def panel_marker_choices(expected: LayoutMarkers) -> list[tuple[str, ...]]:
    """The panel-marker sequences a caption for this layout may use."""
    panels = tuple(expected.panels)
    return [panels, *_TWO_PANEL_ALTERNATIVES.get(panels, ())]


def _split_tail(segment: str) -> tuple[str, str]:
    """'front view, ' -> ('front view', ',') : the text and the punctuation after it."""
    body = clean_text(segment)
    stripped = " ".join(segment.split())
    tail = stripped[len(body) :] if stripped.startswith(body) else ""
    return body, "".join(tail.split())


def _pick_choice(found: list[str], choices: list[tuple[str, ...]]) -> tuple[str, ...]:
    return max(choices, key=lambda choice: sum(marker in choice for marker in found))


def _order_problems(found: list[str], panels: tuple[str, ...]) -> list[str]:
    problems = []
    for marker in panels:
        count = found.count(marker)
        if count == 0:
            problems.append(f"panel marker {marker} is missing")
        elif count > 1:
            problems.append(f"panel marker {marker} occurs {count} times")
    others = [m for m in found if m not in panels]
    if others:
        problems.append(f"marker(s) {', '.join(dict.fromkeys(others))} mixed with {' '.join(panels)}")
    if not problems and found != list(panels):
        problems.append(f"panel markers are out of order: found {' '.join(found)}, expected {' '.join(panels)}")
    return problems


def parse_caption(text: str, expected: LayoutMarkers, require_prefix: bool = True) -> ParsedCaption:
    """Parse `text` against the layout's markers; raises CaptionParseError listing every problem."""
    choices = panel_marker_choices(expected)
    known = {expected.prefix, *(m for choice in choices for m in choice)}
    tokens = list(MARKER_TOKEN.finditer(text))
    problems = [
        f"unexpected marker {t.group()} (this layout uses {expected.prefix} then {' '.join(expected.panels)})"
        for t in tokens
        if t.group() not in known
    ]
    tokens = [t for t in tokens if t.group() in known]
    prefix_tokens = [t for t in tokens if t.group() == expected.prefix]
    panel_tokens = [t for t in tokens if t.group() != expected.prefix]
    if len(prefix_tokens) > 1:
        problems.append(f"prefix {expected.prefix} occurs {len(prefix_tokens)} times")
    elif prefix_tokens and tokens[0] is not prefix_tokens[0]:
        problems.append(f"prefix {expected.prefix} must come before the panel markers")
    elif not prefix_tokens and require_prefix:
        problems.append(f"prefix {expected.prefix} is missing; start the caption with it")
    found = [t.group() for t in panel_tokens]
    panels = _pick_choice(found, choices)
    problems += _order_problems(found, panels)
    if problems:
        raise CaptionParseError(text, problems)

    prefix_match = prefix_tokens[0] if prefix_tokens else None
    lead = text[: (prefix_match or panel_tokens[0]).start()]
    trigger = " ".join(lead.split())
    summary, separators = "", []
    if prefix_match is not None:
        summary, punctuation = _split_tail(text[prefix_match.end() : panel_tokens[0].start()])
        separators.append(f"{punctuation} ")
    else:
        separators.append(CANONICAL_SEPARATOR)  # unused: nothing precedes the first marker
    texts, ending = [], ""
    for index, token in enumerate(panel_tokens):
        end = panel_tokens[index + 1].start() if index + 1 < len(panel_tokens) else len(text)
        body, punctuation = _split_tail(text[token.end() : end])
        if not body:
            problems.append(f"panel marker {token.group()} has no text after it")
        texts.append(body)
        if index + 1 < len(panel_tokens):
            separators.append(f"{punctuation} ")
        else:
            ending = punctuation
    if problems:
        raise CaptionParseError(text, problems)
    return ParsedCaption(
        trigger=trigger,
        prefix=prefix_match.group() if prefix_match else "",
        summary=summary,
        markers=tuple(found),
        texts=tuple(texts),
        separators=tuple(separators),
        ending=ending,
    )


def validate_caption(text: str, expected: LayoutMarkers, require_prefix: bool = True) -> list[str]:
    """Every problem with `text` for this layout; [] when it is valid."""
    try:
        parse_caption(text, expected, require_prefix)
    except CaptionParseError as exc:
        return exc.problems
    return []


def with_trigger(text: str, markers: LayoutMarkers, trigger: str) -> str:
    """`text` led by `trigger` (SaveICLoRADataset's trigger, applied to a captioner's caption): a marker
    caption keeps its own words and separators and any trigger it had is replaced; other text gets the
    trigger in front. An empty trigger leaves the text as it is."""
    trigger = plain_text(trigger)
    if not trigger:
        return text
    try:
        parsed = parse_caption(text, markers)
    except CaptionParseError:
        return text if text.split()[: len(trigger.split())] == trigger.split() else f"{trigger} {text.lstrip()}"
    return replace(parsed, trigger=trigger).render()
