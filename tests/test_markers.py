import pytest
from packload import mvic_module

markers = mvic_module("markers")


def test_named_layouts():
    assert markers.markers_for(2, 2).prefix == "[FOUR-VIEWS]"
    assert markers.markers_for(2, 2).panels == ("[TOP-LEFT]", "[TOP-RIGHT]", "[BOTTOM-LEFT]", "[BOTTOM-RIGHT]")
    assert markers.markers_for(1, 2).panels == ("[LEFT]", "[RIGHT]")
    assert markers.markers_for(2, 1).panels == ("[TOP]", "[BOTTOM]")
    assert markers.markers_for(3, 1).panels == ("[TOP]", "[MIDDLE]", "[BOTTOM]")
    assert markers.markers_for(3, 1).prefix == "[THREE-VIEWS]"


def test_generic_layouts():
    assert markers.markers_for(1, 4).panels == ("[IMAGE1]", "[IMAGE2]", "[IMAGE3]", "[IMAGE4]")
    assert markers.markers_for(5, 1).panels[-1] == "[IMAGE5]"
    assert markers.markers_for(2, 3).prefix == "[SIX-VIEWS]"
    assert markers.markers_for(2, 3).panels == tuple(f"[ROW{r}-COL{c}]" for r in (1, 2) for c in (1, 2, 3))


def test_custom_style():
    style = markers.MarkerStyle(prefix="[MOVIE-SHOTS]", panel_pattern="[SCENE-{n}]")
    got = markers.markers_for(1, 3, style)
    assert got.prefix == "[MOVIE-SHOTS]" and got.panels == ("[SCENE-1]", "[SCENE-2]", "[SCENE-3]")


@pytest.mark.parametrize("style", [markers.MarkerStyle(prefix="MOVIE"), markers.MarkerStyle(panel_pattern="[SCENE]")])
def test_bad_styles_name_the_problem(style):
    with pytest.raises(ValueError, match="marker"):
        markers.markers_for(2, 2, style)


@pytest.mark.parametrize(
    "pattern",
    [
        "[V{n:0>50000000}]",
        "[V{n:0>4}]",
        "[V{n.real}]",
        "[V{0}]",
        "[V{}]",
        "[V{n!r}]",
        "[V{n:{row}}]",
        "[V{n:x}]",
        "[V{n",
        "[" + "A" * 100 + "{n}]",
    ],
)
def test_untrusted_patterns_are_refused_before_formatting(pattern):
    """A workflow's panel_marker: only {n} / {row} / {col}, widths up to 3 (issue 9's 200 MB caption)."""
    with pytest.raises(ValueError, match="panel marker pattern"):
        markers.markers_for(2, 2, markers.MarkerStyle(panel_pattern=pattern))


def test_allowed_widths():
    assert markers.markers_for(2, 2, markers.MarkerStyle(panel_pattern="[V{n:03}]")).panels[-1] == "[V004]"
    assert markers.markers_for(2, 2, markers.MarkerStyle(panel_pattern="[R{row:0>2}-C{col}]")).panels[1] == "[R01-C2]"
