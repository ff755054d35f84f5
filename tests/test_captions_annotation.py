"""The structured annotation: consistency rules, the schema sent to models, and its caption."""

import json

import pytest
from packload import mvic_module

annotation = mvic_module("captions.annotation")
markers_mod = mvic_module("markers")
parse_mod = mvic_module("captions.text")


def panel(
    n=1, view="front", side="none", vertical="eye_level", framing="full_object", features=("handle",), confidence=0.9
):
    return {
        "panel": n,
        "horizontal_view": view,
        "side": side,
        "vertical_angle": vertical,
        "framing": framing,
        "visible_features": list(features),
        "confidence": confidence,
    }


def answer(*panels, name="red ceramic mug", summary="A red ceramic mug seen from four sides."):
    return json.dumps({"object_name": name, "summary": summary, "panels": list(panels)})


FOUR = [
    panel(1),
    panel(2, "side", "left", "high_angle"),
    panel(3, "back"),
    panel(4, "front_three_quarter", "right", "low_angle", "close_up"),
]


def test_valid_answer_renders_a_caption_that_validates_against_the_layout():
    markers = markers_mod.markers_for(2, 2)
    parsed_answer = annotation.parse_annotation(answer(*FOUR), 4)
    caption = annotation.render_annotation(parsed_answer, markers, annotation.RenderOptions(trigger="mvstyle"))
    assert caption == (
        "mvstyle [FOUR-VIEWS] A red ceramic mug seen from four sides; "
        "[TOP-LEFT] This photo shows a front view of the red ceramic mug, with handle visible; "
        "[TOP-RIGHT] This photo shows a high-angle left side view of the red ceramic mug, with handle visible; "
        "[BOTTOM-LEFT] This photo shows a back view of the red ceramic mug, with handle visible; "
        "[BOTTOM-RIGHT] This photo shows a close-up low-angle front three-quarter view from the right of the red "
        "ceramic mug, with handle visible."
    )
    assert parse_mod.validate_caption(caption, markers) == []


@pytest.mark.parametrize(
    "bad_panel, message",
    [
        (
            panel(1, "front", "left"),
            "side 'left' is only allowed for front_three_quarter, side, back_three_quarter views",
        ),
        (panel(1, "back", "right"), "not 'back'"),
        (panel(1, "side", "none"), "needs side left, right or indeterminate"),
        (panel(1, confidence=1.5), "less than or equal to 1"),
        (panel(1, view="sideways"), "Input should be 'front'"),
        (panel(1, features=("",)), "non-empty phrases"),
    ],
)
def test_consistency_rules_reject_impossible_panels(bad_panel, message):
    with pytest.raises(annotation.AnnotationError, match="does not match the schema") as info:
        annotation.parse_annotation(answer(bad_panel), 1)
    assert message in str(info.value)


def test_panel_count_and_numbering_must_match_the_layout():
    with pytest.raises(annotation.AnnotationError, match="the composite has 4 panels but the answer describes 3"):
        annotation.parse_annotation(answer(*FOUR[:3]), 4)
    swapped = [FOUR[1], FOUR[0], FOUR[2], FOUR[3]]
    with pytest.raises(annotation.AnnotationError, match=r"numbered 1..4 in reading order, got \[2, 1, 3, 4\]"):
        annotation.parse_annotation(answer(*swapped), 4)


def test_square_brackets_in_model_text_are_refused_because_they_would_fake_markers():
    with pytest.raises(annotation.AnnotationError, match="square brackets"):
        annotation.parse_annotation(answer(panel(1), summary="A mug [TOP-LEFT] oops"), 1)


def test_not_json_is_an_annotation_error_that_says_where():
    with pytest.raises(annotation.AnnotationError, match=r"not valid JSON \(Expecting .* line 1 column 2\)"):
        annotation.parse_annotation("{oops", 1)


def test_indeterminate_fields_are_never_guessed():
    unsure = annotation.parse_annotation(answer(panel(1, "side", "indeterminate", "indeterminate")), 1)
    text = annotation.panel_text(unsure.panels[0], unsure.object_name, annotation.RenderOptions())
    assert text == "This photo shows a side view of the red ceramic mug, with handle visible"
    ball = annotation.parse_annotation(answer(panel(1, "indeterminate", "indeterminate", "high_angle"), name="ball"), 1)
    assert (
        annotation.panel_text(ball.panels[0], "ball", annotation.RenderOptions())
        == "This photo shows a high-angle view of the ball, with handle visible"
    )


def test_appearance_only_drops_pose_words_from_unsure_panels_only():
    parsed = annotation.parse_annotation(
        answer(
            panel(1, "side", "left", confidence=0.3),
            panel(2, "back", confidence=0.95),
            panel(3, "side", "indeterminate"),
        ),
        3,
    )
    options = annotation.RenderOptions(appearance_only=True, min_confidence=0.5)
    texts = [annotation.panel_text(p, parsed.object_name, options) for p in parsed.panels]
    assert texts == [
        "This photo shows the red ceramic mug, with handle visible",
        "This photo shows a back view of the red ceramic mug, with handle visible",
        "This photo shows the red ceramic mug, with handle visible",
    ]
    # Without the option the confident parts stay.
    plain = [annotation.panel_text(p, parsed.object_name, annotation.RenderOptions()) for p in parsed.panels]
    assert plain[0] == "This photo shows a left side view of the red ceramic mug, with handle visible"


def test_schema_pins_the_panel_count_and_is_fresh_each_call():
    schema = annotation.annotation_json_schema(6)
    assert schema["properties"]["panels"]["minItems"] == schema["properties"]["panels"]["maxItems"] == 6
    assert "additionalProperties" not in json.dumps(schema)
    schema["properties"]["panels"]["minItems"] = 99  # an SDK rewriting it in place must not leak into the next request
    assert annotation.annotation_json_schema(6)["properties"]["panels"]["minItems"] == 6
    strict = annotation.annotation_json_schema(2, strict=True)
    assert (
        strict["additionalProperties"] is False and strict["$defs"]["PanelAnnotation"]["additionalProperties"] is False
    )


def test_fenced_json_from_local_servers_is_accepted():
    assert annotation.parse_annotation("```json\n" + answer(panel(1)) + "\n```", 1).object_name == "red ceramic mug"
