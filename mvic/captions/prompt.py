"""The instructions sent with each composite. Changing the wording changes what the
model answers, so bump PROMPT_VERSION with it: the version is part of the cache key."""

from __future__ import annotations

from ..datatypes import Composite
from ..markers import number_word

PROMPT_VERSION = "annotation-1"
INPUT_MODES = ("composite", "views")


def _panel_names(rows: int, cols: int) -> str:
    if rows == 1:
        return "numbered 1 to {n} from left to right".format(n=cols)
    if cols == 1:
        return "numbered 1 to {n} from top to bottom".format(n=rows)
    return f"numbered 1 to {rows * cols} in reading order (row by row, left to right; panel 1 is top-left)"


def build_prompt(composite: Composite, input_mode: str = "composite") -> str:
    layout = composite.layout
    count = layout.count
    category = composite.category.strip() or "object"
    if input_mode == "views":
        what = f"You get {number_word(count).lower()} separate photos of the same object, in panel order 1 to {count}."
    else:
        what = (
            f"The image is a composite of {number_word(count).lower()} photos of the same object in a "
            f"{layout.rows} x {layout.cols} grid, panels {_panel_names(layout.rows, layout.cols)}."
        )
    return "\n".join(
        [
            "You annotate training images for a multi-view In-Context LoRA.",
            what,
            f"The dataset files this object under the category '{category}'; name it more precisely if the photos "
            "show what it is.",
            "Return JSON only, matching the schema:",
            "- object_name: a short noun phrase for the object (e.g. 'red ceramic mug').",
            "- summary: one sentence about the object and that the photos show it from different angles.",
            f"- panels: exactly {count} entries, panel 1 to {count} in order, each with:",
            "  horizontal_view: front, front_three_quarter, side, back_three_quarter, back, or indeterminate;",
            "  side: the object's own side that faces the camera (left or right) for side and three-quarter views, "
            "none for front and back views, indeterminate when you cannot tell;",
            "  vertical_angle: eye_level, high_angle, low_angle, top_down, or indeterminate;",
            "  framing: full_object, close_up, partial, or indeterminate;",
            "  visible_features: up to 6 short noun phrases for what this panel shows;",
            "  confidence: 0 to 1, how sure you are of the pose fields.",
            "Never guess a pose: an object without a clear front (a ball, a plain box) is 'indeterminate'.",
            "Do not write square brackets anywhere.",
        ]
    )


def reask_prompt(problem: str) -> str:
    return f"Your previous answer was rejected: {problem}\nAnswer again with JSON only that matches the schema exactly."
