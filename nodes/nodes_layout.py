"""CompositeGrid and SplitComposite: views -> one composite, and back (mvic.composites, mvic.layout)."""
from __future__ import annotations

from ..mvic.layout import FIT_MODES, CompositeLayout, parse_color, split_boxes
from ..mvic.markers import MarkerStyle
from .comfy_io import Progress, images_to_tensor


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
                "panel_width": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 16}),
                "panel_height": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 16}),
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

        layout = CompositeLayout(rows, cols, panel_width, panel_height, divider_width, parse_color(divider_color))
        result = build_composites(
            mv_sets, layout, fit, parse_color(pad_color), MarkerStyle(marker_prefix, panel_marker), on_progress=Progress(len(mv_sets.sets))
        )
        lines = []
        if min_consistency:
            from ..mvic.consistency.hygiene import filter_composites

            result, lines = filter_composites(result, min_consistency, on_progress=Progress(len(result.items)))
        if not result.items:
            raise ValueError(f"CompositeGrid: every set was skipped.\n{result.report()}")
        return (result, images_to_tensor([c.image for c in result.items]), "\n".join([result.report(), *lines]))


class SplitComposite:
    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = "Cuts composites into their panels (reading order): the exact inverse of CompositeGrid."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("views",)
    FUNCTION = "split"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "rows": ("INT", {"default": 2, "min": 1, "max": 8}), "cols": ("INT", {"default": 2, "min": 1, "max": 8})}}

    def split(self, image, rows, cols):
        import torch

        boxes = split_boxes(image.shape[1], image.shape[2], rows, cols)
        # Slicing the float tensor keeps values bit-exact (no uint8 round trip).
        views = [image[b : b + 1, t:bottom, l:r] for b in range(image.shape[0]) for t, bottom, l, r in boxes]
        return (torch.cat(views, dim=0),)


NODE_CLASS_MAPPINGS = {"MVIC_CompositeGrid": CompositeGrid, "MVIC_SplitComposite": SplitComposite}
NODE_DISPLAY_NAME_MAPPINGS = {"MVIC_CompositeGrid": "CompositeGrid", "MVIC_SplitComposite": "SplitComposite"}
