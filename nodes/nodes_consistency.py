"""ConsistencyScore: do the panels show one object from several angles? (mvic.consistency)"""

from __future__ import annotations

import json

from comfy_api.latest import io

from .comfy_io import Progress, category, images_to_tensor, preview_images, tensor_to_images

INPUT_KINDS = ("composite", "views")


class ConsistencyScore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MVIC_ConsistencyScore",
            display_name="Multi-View Consistency Score",
            category=category("sample"),
            description=(
                "Scores whether a composite's panels (or a batch of views) show one object from several "
                "angles: geometric agreement, duplicate panels, viewpoint spread, grid seams. "
                "Weight-free, CPU."
            ),
            inputs=[
                io.Image.Input("image", tooltip="composites (a batch is scored one by one), or the views of one set"),
                io.Combo.Input(
                    "input_is",
                    options=list(INPUT_KINDS),
                    default="composite",
                    tooltip="views: the whole batch is one set",
                ),
                io.Int.Input("rows", default=2, min=1, max=8, tooltip="the composite's grid (composite input)"),
                io.Int.Input("cols", default=2, min=1, max=8, tooltip="the composite's grid (composite input)"),
                io.Int.Input(
                    "divider_width", default=0, min=0, max=64, optional=True, tooltip="dividers painted between panels"
                ),
                io.Boolean.Input(
                    "learned_similarity",
                    default=False,
                    optional=True,
                    tooltip=(
                        "add the learned similarity of the model folder this machine configures in "
                        "MVIC_SIMILARITY_MODEL; "
                        "skipped with a note when none is set"
                    ),
                ),
            ],
            outputs=[
                io.String.Output(display_name="scores", tooltip="JSON list, one object per composite"),
                io.Image.Output(display_name="annotated", tooltip="each composite with its scores drawn on it"),
                io.Float.Output(
                    display_name="consistency",
                    tooltip=("consistency (0-1) of the first composite: the best candidate of a ranked sampler batch"),
                ),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, image, input_is, rows, cols, divider_width=0, learned_similarity=False) -> io.NodeOutput:
        from ..mvic.consistency.learned import configured_similarity

        if input_is not in INPUT_KINDS:
            raise ValueError(f"ConsistencyScore: input_is {input_is!r}: choose one of {', '.join(INPUT_KINDS)}")
        learned, note = configured_similarity() if learned_similarity else (None, "learned similarity: off")
        arrays = tensor_to_images(image)
        if input_is == "views":
            results = [_score_views(arrays, learned, note)]
        else:
            progress = Progress(len(arrays))
            results = []
            for done, array in enumerate(arrays, start=1):
                results.append(_score_composite(array, rows, cols, divider_width, learned, note))
                progress(done, len(arrays))
        scores = [dict(index=i, **score.to_dict()) for i, (score, _) in enumerate(results)]
        annotated = [picture for _, picture in results]
        lines = [f"{i + 1}: {score.summary()}" for i, (score, _) in enumerate(results)]
        text = json.dumps(scores, indent=1)
        ui = {"text": lines, "scores": [text], "images": preview_images(annotated, "mvic_consistency")}
        return io.NodeOutput(text, images_to_tensor(annotated), float(results[0][0].consistency), ui=ui)


def _score_composite(array, rows, cols, divider_width, learned, note):
    from ..mvic.consistency import score_composite
    from ..mvic.consistency.sheet import annotate
    from ..mvic.layout import split_boxes

    score = score_composite(array, rows, cols, divider_width, learned=learned)
    score.learned_note = score.learned_note or note
    return score, annotate(array, score, split_boxes(array.shape[0], array.shape[1], rows, cols))


def _score_views(arrays, learned, note):
    from ..mvic.consistency import score_views
    from ..mvic.consistency.sheet import annotate, views_strip

    score = score_views(arrays, learned=learned)
    score.learned_note = score.learned_note or note
    strip, boxes = views_strip(arrays)
    return score, annotate(strip, score, boxes)


NODES = [ConsistencyScore]
