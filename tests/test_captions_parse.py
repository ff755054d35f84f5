"""Marker captions: render <-> parse for every layout, both caption styles, and the validator."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packload import mvic_module

markers_mod = mvic_module("markers")
parse_mod = mvic_module("captions.text")
render_mod = mvic_module("captions.text")
template_mod = mvic_module("captions.template")

FOUR_VIEWS = (
    "[FOUR-VIEWS] This set of four images shows a red ceramic mug from different angles; "
    "[TOP-LEFT] This photo shows a front view of the mug, with the handle hidden; "
    "[TOP-RIGHT] This photo shows a left side view of the mug, with the handle visible; "
    "[BOTTOM-LEFT] This photo shows a back view of the mug; "
    "[BOTTOM-RIGHT] This photo shows a high-angle view of the mug, looking into it."
)
MOVIE_SHOTS = (
    "[MOVIE-SHOTS] In a vibrant festival, [SCENE-1] we find <Leo>, a shy boy, standing at the edge of a bustling "
    "carnival, eyes wide with awe at the colorful rides, [SCENE-2] transitioning to <Leo> reluctantly trying a daring "
    "game while <Mia> cheers him on, [SCENE-3] culminating in a triumphant moment as he wins a giant stuffed bear."
)
MOVIE_STYLE = markers_mod.MarkerStyle("[MOVIE-SHOTS]", "[SCENE-{n}]")


def test_acceptance_four_views_caption_parses_validates_and_rerenders_identically():
    expected = markers_mod.markers_for(2, 2)
    parsed = parse_mod.parse_caption(FOUR_VIEWS, expected)
    assert parsed.prefix == "[FOUR-VIEWS]"
    assert parsed.summary == "This set of four images shows a red ceramic mug from different angles"
    assert parsed.markers == ("[TOP-LEFT]", "[TOP-RIGHT]", "[BOTTOM-LEFT]", "[BOTTOM-RIGHT]")
    assert parsed.texts[0] == "This photo shows a front view of the mug, with the handle hidden"
    assert parsed.texts[3] == "This photo shows a high-angle view of the mug, looking into it"
    assert parse_mod.validate_caption(FOUR_VIEWS, expected) == []
    assert parsed.render() == FOUR_VIEWS
    assert parsed.canonical(expected) == FOUR_VIEWS  # it is already in the canonical form


def test_acceptance_movie_shots_caption_with_name_tags_parses_validates_and_rerenders_identically():
    expected = markers_mod.markers_for(1, 3, MOVIE_STYLE)
    parsed = parse_mod.parse_caption(MOVIE_SHOTS, expected)
    assert parsed.prefix == "[MOVIE-SHOTS]" and parsed.summary == "In a vibrant festival"
    assert parsed.markers == ("[SCENE-1]", "[SCENE-2]", "[SCENE-3]")
    assert parsed.separators == (", ", ", ", ", ")
    assert parsed.texts[0].startswith("we find <Leo>, a shy boy,")  # commas inside a panel text stay
    assert parsed.names == ["Leo", "Mia"]
    assert parse_mod.validate_caption(MOVIE_SHOTS, expected) == []
    assert parsed.render() == MOVIE_SHOTS
    # The same content in the canonical `; ` form parses back to the same parts.
    canonical = parsed.canonical(expected)
    assert "; [SCENE-2] transitioning to <Leo>" in canonical
    assert parse_mod.parse_caption(canonical, expected).texts == parsed.texts


def test_trigger_word_is_kept_in_front():
    expected = markers_mod.markers_for(2, 2)
    parsed = parse_mod.parse_caption("mvstyle " + FOUR_VIEWS, expected)
    assert parsed.trigger == "mvstyle" and parsed.render() == "mvstyle " + FOUR_VIEWS


@pytest.mark.parametrize(
    "rows, cols, written",
    [(1, 2, ("[IMAGE1]", "[IMAGE2]")), (1, 2, ("[LEFT]", "[RIGHT]")), (2, 1, ("[IMAGE1]", "[IMAGE2]"))],
)
def test_two_panel_captions_parse_in_both_styles(rows, cols, written):
    expected = markers_mod.markers_for(rows, cols)
    caption = f"[TWO-VIEWS] A chair; {written[0]} seen from the front; {written[1]} seen from behind."
    parsed = parse_mod.parse_caption(caption, expected)
    assert parsed.markers == written and parsed.texts == ("seen from the front", "seen from behind")
    assert parsed.render() == caption


def test_two_panel_caption_without_prefix_parses_when_the_prefix_is_optional():
    expected = markers_mod.markers_for(1, 2)
    caption = "[IMAGE1] a red chair, front; [IMAGE2] the same chair from behind."
    assert parse_mod.validate_caption(caption, expected) == ["prefix [TWO-VIEWS] is missing; start the caption with it"]
    parsed = parse_mod.parse_caption(caption, expected, require_prefix=False)
    assert parsed.prefix == "" and parsed.render() == caption


@pytest.mark.parametrize(
    "caption, problem",
    [
        ("[FOUR-VIEWS] x; [TOP-LEFT] a; [TOP-RIGHT] b; [BOTTOM-LEFT] c.", "panel marker [BOTTOM-RIGHT] is missing"),
        (
            "[FOUR-VIEWS] x; [TOP-LEFT] a; [TOP-RIGHT] b; [TOP-RIGHT] b2; [BOTTOM-LEFT] c; [BOTTOM-RIGHT] d.",
            "panel marker [TOP-RIGHT] occurs 2 times",
        ),
        (
            "[FOUR-VIEWS] x; [TOP-RIGHT] b; [TOP-LEFT] a; [BOTTOM-LEFT] c; [BOTTOM-RIGHT] d.",
            "out of order: found [TOP-RIGHT] [TOP-LEFT] [BOTTOM-LEFT] [BOTTOM-RIGHT]",
        ),
        (
            "[FOUR-VIEWS] x; [TOP-LEFT] a; [TOP-RIGHT] ; [BOTTOM-LEFT] c; [BOTTOM-RIGHT] d.",
            "panel marker [TOP-RIGHT] has no text after it",
        ),
        (
            "[FOUR-VIEWS] x; [TOP-LEFT] a; [TOP-RIGHT] b; [BOTTOM-LEFT] c; [BOTTOM-RIGHT] d; [EXTRA] e.",
            "unexpected marker [EXTRA]",
        ),
        (
            "[TOP-LEFT] a; [FOUR-VIEWS] x; [TOP-RIGHT] b; [BOTTOM-LEFT] c; [BOTTOM-RIGHT] d.",
            "prefix [FOUR-VIEWS] must come before the panel markers",
        ),
        (
            "[THREE-VIEWS] x; [TOP-LEFT] a; [TOP-RIGHT] b; [BOTTOM-LEFT] c; [BOTTOM-RIGHT] d.",
            "unexpected marker [THREE-VIEWS]",
        ),
    ],
)
def test_validator_names_each_problem(caption, problem):
    expected = markers_mod.markers_for(2, 2)
    problems = parse_mod.validate_caption(caption, expected)
    assert any(problem in p for p in problems), problems
    with pytest.raises(parse_mod.CaptionParseError, match="does not match its layout"):
        parse_mod.parse_caption(caption, expected)


def test_mixing_two_panel_styles_is_rejected():
    expected = markers_mod.markers_for(1, 2)
    problems = parse_mod.validate_caption("[TWO-VIEWS] x; [LEFT] a; [IMAGE2] b.", expected)
    assert any("mixed with" in p for p in problems), problems


# --- properties over the whole marker table ------------------------------------------------

layouts = st.tuples(st.integers(1, 6), st.integers(1, 6)).filter(lambda rc: rc[0] * rc[1] <= 20)
# Words may carry `<Name>` brackets and end in the separators themselves; no square brackets.
words = st.builds(
    str.__add__, st.text("abcXYZ019'<>-", min_size=1, max_size=8), st.sampled_from(["", "", ",", ";", "."])
)
texts = st.lists(words, min_size=1, max_size=6).map(" ".join).filter(lambda t: render_mod.clean_text(t) != "")
summaries = st.lists(words, min_size=0, max_size=6).map(" ".join)
triggers = st.sampled_from(["", "mvstyle", "ohwx person"])
separators = st.sampled_from(["; ", ", ", ". "])


def _custom_style(draw) -> "markers_mod.MarkerStyle":
    prefix = draw(st.sampled_from(["", "[MOVIE-SHOTS]", "[SET]", "[PRODUCT-GRID]"]))
    pattern = draw(st.sampled_from(["", "[SCENE-{n}]", "[R{row}C{col}]", "[SHOT{n}]", "[P-{row}-{col}]"]))
    return markers_mod.MarkerStyle(prefix, pattern)


@st.composite
def caption_cases(draw):
    rows, cols = draw(layouts)
    markers = markers_mod.markers_for(rows, cols, _custom_style(draw))
    panel_texts = [draw(texts) for _ in markers.panels]
    return markers, draw(summaries), panel_texts, draw(triggers), draw(separators)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(caption_cases())
def test_render_then_parse_round_trips_for_every_layout_and_style(case):
    markers, summary, panel_texts, trigger, separator = case
    caption = render_mod.render_caption(markers, summary, panel_texts, trigger, separator)
    parsed = parse_mod.parse_caption(caption, markers)
    assert parsed.trigger == trigger
    assert parsed.prefix == markers.prefix and parsed.markers == markers.panels
    assert parsed.summary == render_mod.clean_text(summary)
    assert list(parsed.texts) == [render_mod.clean_text(t) for t in panel_texts]
    assert parsed.render() == caption
    assert parsed.canonical(markers, separator=separator) == caption


@settings(max_examples=150, deadline=None)
@given(caption_cases(), st.data())
def test_a_dropped_or_repeated_marker_is_always_caught(case, data):
    markers, summary, panel_texts, trigger, _ = case
    caption = render_mod.render_caption(markers, summary, panel_texts, trigger)
    victim = data.draw(st.sampled_from(markers.panels))
    dropped = caption.replace(victim + " ", "", 1)
    assert f"panel marker {victim} is missing" in parse_mod.validate_caption(dropped, markers)
    repeated = caption[:-1] + f"; {victim} again."
    assert any(victim in p and "occurs 2 times" in p for p in parse_mod.validate_caption(repeated, markers))


@pytest.mark.parametrize("rows, cols", [(r, c) for r in range(1, 5) for c in range(1, 5)])
def test_template_captions_validate_for_every_default_layout(rows, cols):
    layout = mvic_module("layout").CompositeLayout(rows, cols, 16, 16)
    datatypes = mvic_module("datatypes")
    import numpy as np

    panels = [datatypes.PanelSource("s", "lamp", "f", i) for i in range(rows * cols)]
    composite = datatypes.Composite(
        "s",
        "lamp",
        layout,
        markers_mod.markers_for(rows, cols),
        np.zeros((layout.height, layout.width, 3), np.uint8),
        panels,
    )
    caption = template_mod.template_caption(composite, "trig").text
    parsed = parse_mod.parse_caption(caption, composite.markers)
    assert parsed.trigger == "trig" and parsed.render() == caption
