"""The offline `template` backend: captions from the category and, when poses are
known, each view's azimuth/elevation relative to the first view. No model, no key."""

from __future__ import annotations

from ..datatypes import Caption, Composite, ViewAngle
from ..markers import number_word
from .text import render_caption

PROMPT_VERSION = "template-1"


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def view_phrase(angle: ViewAngle) -> str:
    """'front view', 'left side view', 'back three-quarter view', 'high-angle front view'…"""
    az = (angle.azimuth_deg + 180.0) % 360.0 - 180.0
    side = "left" if az > 0 else "right"
    magnitude = abs(az)
    if magnitude <= 30:
        view = "front view"
    elif magnitude <= 65:
        view = f"front three-quarter view from the {side}"
    elif magnitude <= 115:
        view = f"{side} side view"
    elif magnitude <= 150:
        view = f"back three-quarter view from the {side}"
    else:
        view = "back view"
    if angle.elevation_deg >= 35:
        return f"high-angle {view}"
    if angle.elevation_deg <= -15:
        return f"low-angle {view}"
    return view


def template_caption(composite: Composite, trigger: str = "") -> Caption:
    category = composite.category.strip() or "object"
    count = len(composite.panels)
    summary = (
        f"This set of {number_word(count).lower()} images shows {_article(category)} {category} from different angles"
    )
    texts = []
    for position, panel in enumerate(composite.panels, start=1):
        if panel.angle is not None:
            texts.append(f"This photo shows a {view_phrase(panel.angle)} of the {category}")
        else:
            texts.append(f"This photo shows viewpoint {position} of {count} around the {category}")
    text = render_caption(composite.markers, summary, texts, trigger)
    return Caption(text=text, backend="template", prompt_version=PROMPT_VERSION)
