"""CompositeGrid and SplitComposite: views -> one composite, and back (mvic.composites,
mvic.importing for finished composites, mvic.layout, mvic.seams)."""
from __future__ import annotations

from ..mvic.layout import FIT_MODES, CompositeLayout, parse_color
from ..mvic.markers import MarkerStyle, markers_for
from .comfy_io import Progress, images_to_tensor

MAX_COMPOSITE_PIXELS = 4096 * 4096  # what FLUX trains on comfortably; a workflow cannot ask for gigapixels


class CompositeGrid:
    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = "Fits each set's views into one rows x cols composite (panel sides multiples of 16)."
    RETURN_TYPES = ("MV_COMPOSITES", "IMAGE", "STRING")
    RETURN_NAMES = ("composites", "images", "report")
    FUNCTION = "compose"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "mv_sets": ("MV_SETS",),
                "rows": ("INT", {"default": 2, "min": 1, "max": 8}),
                "cols": ("INT", {"default": 2, "min": 1, "max": 8}),
                "panel_width": ("INT", {"default": 512, "min": 0, "max": 4096, "step": 16}),
                "panel_height": ("INT", {"default": 512, "min": 0, "max": 4096, "step": 16}),
                "fit": (list(FIT_MODES), {"default": "crop", "tooltip": "crop: centre crop; pad: letterbox; stretch distorts"}),
            },
            "optional": {
                "pad_color": ("STRING", {"default": "#000000"}),
                "divider_width": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": "painted over panel edges; 0 = none"}),
                "divider_color": ("STRING", {"default": "#ffffff"}),
                "marker_prefix": ("STRING", {"default": "", "tooltip": "empty: [FOUR-VIEWS] etc.; or your own, e.g. [MOVIE-SHOTS]"}),
                "panel_marker": ("STRING", {"default": "", "tooltip": "empty: [TOP-LEFT] etc.; or a pattern like [SCENE-{n}]"}),
                "min_consistency": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip":
                                             "drop sets whose views do not agree (consistency 0-1); 0 = keep all"}),
            },
        }

    def compose(self, mv_sets, rows, cols, panel_width, panel_height, fit, pad_color="#000000", divider_width=0,
                divider_color="#ffffff", marker_prefix="", panel_marker="", min_consistency=0.0):
        from ..mvic.composites import build_composites
        from ..mvic.importing import build_imported_composites, is_imported, skipped_summary

        style, progress = MarkerStyle(marker_prefix, panel_marker), Progress(len(mv_sets.sets))
        try:
            markers_for(rows, cols, style)  # the workflow's marker style, checked before any image is read
        except ValueError as exc:
            raise ValueError(f"CompositeGrid marker_prefix / panel_marker: {exc}") from None
        if is_imported(mv_sets):  # finished composites: rows x cols and the markers must fit their captions
            result = build_imported_composites(
                mv_sets, (rows, cols), (panel_width, panel_height), fit, parse_color(pad_color), style,
                divider_width, parse_color(divider_color), on_progress=progress,
            )
            if not result.items:
                raise ValueError(f"CompositeGrid: no composite could be imported.\n{skipped_summary(result.skipped)}")
        else:
            if not panel_width or not panel_height:
                raise ValueError(
                    "CompositeGrid: panel_width / panel_height 0 keeps the size of imported composites only "
                    "(MultiViewLoader source 'composites'); give the panel size, e.g. 512"
                )
            layout = CompositeLayout(rows, cols, panel_width, panel_height, divider_width, parse_color(divider_color))
            if layout.width * layout.height > MAX_COMPOSITE_PIXELS:
                raise ValueError(
                    f"CompositeGrid: a {rows}x{cols} grid of {panel_width}x{panel_height} panels is "
                    f"{layout.width}x{layout.height} pixels, more than {MAX_COMPOSITE_PIXELS // 1_000_000} MP: "
                    "use smaller panels or fewer of them"
                )
            result = build_composites(mv_sets, layout, fit, parse_color(pad_color), style, on_progress=progress)
        lines = []
        if min_consistency:
            from ..mvic.consistency.hygiene import filter_composites

            result, lines = filter_composites(result, min_consistency, on_progress=Progress(len(result.items)))
        if not result.items:
            raise ValueError(f"CompositeGrid: every set was skipped.\n{result.report()}")
        return (result, images_to_tensor([c.image for c in result.items]), "\n".join([result.report(), *lines]))


class SplitComposite:
    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = (
        "Cuts composites into their panels (reading order): the exact inverse of CompositeGrid; on composites "
        "made elsewhere, cuts where the panels really meet (a few pixels off the exact fractions) and trims "
        "them to one size."
    )
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("views",)
    FUNCTION = "split"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "rows": ("INT", {"default": 2, "min": 1, "max": 8}), "cols": ("INT", {"default": 2, "min": 1, "max": 8})}}

    def split(self, image, rows, cols):
        import torch

        from ..mvic.seams import equal_size_boxes, panel_boxes
        from .comfy_io import tensor_to_images

        # Seams are found on the uint8 picture; slicing the float tensor keeps values bit-exact.
        # Every panel of the batch is trimmed around its centre to the smallest one (IMAGE is one size).
        frames = tensor_to_images(image)
        found = [(index, box) for index, frame in enumerate(frames) for box in panel_boxes(frame, rows, cols)[0]]
        boxes = equal_size_boxes([box for _, box in found])
        views = [image[index : index + 1, t:b, l:r] for (index, _), (t, b, l, r) in zip(found, boxes)]
        return (torch.cat(views, dim=0),)


NODE_CLASS_MAPPINGS = {"MVIC_CompositeGrid": CompositeGrid, "MVIC_SplitComposite": SplitComposite}
NODE_DISPLAY_NAME_MAPPINGS = {"MVIC_CompositeGrid": "CompositeGrid", "MVIC_SplitComposite": "SplitComposite"}
