"""The structured annotation a vision model returns for one composite, and its caption.

The model fills a JSON schema (object summary + one entry per panel); we validate it
with pydantic, enforce the consistency rules the schema cannot express, and render
the caption ourselves, so the markers always match the layout exactly.

Pose words are never guessed: `indeterminate` fields are left out of the caption, and
with `appearance_only` a low-confidence or indeterminate panel gets no pose words at all.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..markers import LayoutMarkers
from .text import clean_text, plain_text, render_caption, shorten

HorizontalView = Literal["front", "front_three_quarter", "side", "back_three_quarter", "back", "indeterminate"]
Side = Literal["left", "right", "none", "indeterminate"]
VerticalAngle = Literal["eye_level", "high_angle", "low_angle", "top_down", "indeterminate"]
Framing = Literal["full_object", "close_up", "partial", "indeterminate"]

SIDED_VIEWS = ("front_three_quarter", "side", "back_three_quarter")
_VIEW_WORDS = {
    "front": "front view",
    "front_three_quarter": "front three-quarter view",
    "side": "side view",
    "back_three_quarter": "back three-quarter view",
    "back": "back view",
}
_VERTICAL_WORDS = {"high_angle": "high-angle", "low_angle": "low-angle", "top_down": "top-down"}
_FRAMING_WORDS = {"close_up": "close-up", "partial": "partial"}
# A model's words are cut to these lengths (not rejected: the rest of a long answer is still good).
MAX_NAME_CHARS, MAX_SUMMARY_CHARS, MAX_FEATURE_CHARS = 120, 600, 80


class PanelAnnotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    panel: int = Field(ge=1, description="1-based panel number in reading order (row by row)")
    horizontal_view: HorizontalView = Field(description="where the camera is around the object")
    side: Side = Field(description="which of the object's own sides faces the camera; 'none' for front/back views")
    vertical_angle: VerticalAngle
    framing: Framing
    visible_features: list[str] = Field(max_length=6, description="short noun phrases for what this panel shows")
    confidence: float = Field(ge=0.0, le=1.0, description="how sure you are of the pose fields")

    @field_validator("visible_features")
    @classmethod
    def _features_are_words(cls, features: list[str]) -> list[str]:
        cleaned = [shorten(plain_text(f), MAX_FEATURE_CHARS) for f in features]
        if any(not f for f in cleaned):
            raise ValueError("visible_features entries must be non-empty phrases")
        return cleaned

    @model_validator(mode="after")
    def _side_matches_view(self) -> "PanelAnnotation":
        if self.side in ("left", "right") and self.horizontal_view not in SIDED_VIEWS:
            raise ValueError(
                f"panel {self.panel}: side '{self.side}' is only allowed for {', '.join(SIDED_VIEWS)} views, "
                f"not '{self.horizontal_view}'; use side 'none'"
            )
        if self.horizontal_view in SIDED_VIEWS and self.side == "none":
            raise ValueError(
                f"panel {self.panel}: a {self.horizontal_view} view needs side left, right or indeterminate"
            )
        return self


class ImageAnnotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object_name: str = Field(min_length=1, description="short noun phrase for the object, e.g. 'red ceramic mug'")
    summary: str = Field(min_length=1, description="one sentence describing the object and the set of views")
    panels: list[PanelAnnotation]

    @field_validator("object_name", "summary")
    @classmethod
    def _no_markers(cls, value: str, info: ValidationInfo) -> str:
        if "[" in value or "]" in value:
            raise ValueError("must not contain square brackets (markers are added by the captioner)")
        value = plain_text(value)
        if not value:
            raise ValueError("must not be empty")
        return shorten(value, MAX_NAME_CHARS if info.field_name == "object_name" else MAX_SUMMARY_CHARS)

    @model_validator(mode="after")
    def _panels_match_layout(self, info: ValidationInfo) -> "ImageAnnotation":
        expected = (info.context or {}).get("panel_count")
        numbers = [p.panel for p in self.panels]
        if expected is not None and len(self.panels) != expected:
            raise ValueError(f"the composite has {expected} panels but the answer describes {len(self.panels)}")
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"panels must be numbered 1..{len(numbers)} in reading order, got {numbers}")
        for panel in self.panels:
            for feature in panel.visible_features:
                if "[" in feature or "]" in feature:
                    raise ValueError(f"panel {panel.panel}: visible_features must not contain square brackets")
        return self


class AnnotationError(ValueError):
    """The model's answer is not valid JSON for the schema; the message is what we quote back to it."""


def parse_annotation(text: str, panel_count: int) -> ImageAnnotation:
    """JSON text from a model -> a validated annotation for a composite of `panel_count` panels."""
    raw = text.strip()
    if raw.startswith("```"):  # some OpenAI-compatible servers fence JSON despite the schema
        raw = raw.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise AnnotationError(
            f"the answer is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    try:
        return ImageAnnotation.model_validate(data, context={"panel_count": panel_count})
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors()[:8]]
        raise AnnotationError("the answer does not match the schema: " + "; ".join(problems)) from None


def annotation_json_schema(panel_count: int, strict: bool = False) -> dict:
    """JSON schema for a composite of `panel_count` panels; a fresh dict each call
    (google-genai rewrites the schema it is given in place). `strict` closes every
    object, as OpenAI-style strict structured outputs require."""
    schema = copy.deepcopy(_BASE_SCHEMA)
    panels = schema["properties"]["panels"]
    panels["minItems"] = panels["maxItems"] = panel_count
    return _set_closed(schema, True) if strict else schema


def _set_closed(node, closed: bool):
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):
            del node["title"]  # pydantic's titles tell a model nothing; each one costs SDK work per request
        if node.get("type") == "object":
            node["additionalProperties"] = False
            if not closed:
                del node["additionalProperties"]
        for value in node.values():
            _set_closed(value, closed)
    elif isinstance(node, list):
        for value in node:
            _set_closed(value, closed)
    return node


# Gemini's response_schema is an OpenAPI subset: send it without additionalProperties
# (pydantic emits it for extra="forbid"); our own validation forbids extras anyway.
_BASE_SCHEMA = _set_closed(ImageAnnotation.model_json_schema(), False)


@dataclass(frozen=True)
class RenderOptions:
    trigger: str = ""
    appearance_only: bool = False  # drop pose words from low-confidence / indeterminate panels
    min_confidence: float = 0.5


def pose_phrase(panel: PanelAnnotation) -> str:
    """'high-angle left side view', 'front three-quarter view from the right', '' when unknown."""
    if panel.horizontal_view == "indeterminate":
        view = ""
    elif panel.horizontal_view == "side" and panel.side in ("left", "right"):
        view = f"{panel.side} side view"
    elif panel.horizontal_view in ("front_three_quarter", "back_three_quarter") and panel.side in ("left", "right"):
        view = f"{_VIEW_WORDS[panel.horizontal_view]} from the {panel.side}"
    else:
        view = _VIEW_WORDS[panel.horizontal_view]
    vertical = _VERTICAL_WORDS.get(panel.vertical_angle, "")
    if vertical and not view:
        return f"{vertical} view"
    return f"{vertical} {view}".strip()


def _is_uncertain(panel: PanelAnnotation, options: RenderOptions) -> bool:
    fields = (panel.horizontal_view, panel.side, panel.vertical_angle)
    return panel.confidence < options.min_confidence or "indeterminate" in fields


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def panel_text(panel: PanelAnnotation, object_name: str, options: RenderOptions) -> str:
    name = clean_text(object_name)
    framing = _FRAMING_WORDS.get(panel.framing, "")
    pose = "" if options.appearance_only and _is_uncertain(panel, options) else pose_phrase(panel)
    if pose:
        shot = f"{framing} {pose}".strip()
        text = f"This photo shows {_article(shot)} {shot} of the {name}"
    elif framing:
        text = f"This photo shows {_article(framing)} {framing} view of the {name}"
    else:
        text = f"This photo shows the {name}"
    features = [clean_text(f) for f in panel.visible_features if clean_text(f)]
    if features:
        listed = features[0] if len(features) == 1 else ", ".join(features[:-1]) + " and " + features[-1]
        text += f", with {listed} visible"
    return text


def render_annotation(
    annotation: ImageAnnotation, markers: LayoutMarkers, options: RenderOptions = RenderOptions()
) -> str:
    if len(annotation.panels) != len(markers.panels):
        raise ValueError(f"annotation has {len(annotation.panels)} panels, the layout has {len(markers.panels)}")
    summary = clean_text(annotation.summary)
    texts = [panel_text(panel, annotation.object_name, options) for panel in annotation.panels]
    return render_caption(markers, summary, texts, options.trigger)
