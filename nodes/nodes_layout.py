"""CompositeGrid and SplitComposite: views -> one composite, and back (mvic.composites,
mvic.importing for finished composites, mvic.layout, mvic.seams)."""

from __future__ import annotations

from comfy_api.latest import io

from ..mvic.layout import FIT_MODES, CompositeLayout, parse_color
from ..mvic.markers import MarkerStyle, markers_for
from .comfy_io import Progress, category, images_to_tensor, split_views

MAX_COMPOSITE_PIXELS = 4096 * 4096  # what FLUX trains on comfortably; a workflow cannot ask for gigapixels
MV_SETS, MV_COMPOSITES = io.Custom("MV_SETS"), io.Custom("MV_COMPOSITES")


def grid_inputs(tooltip: str) -> list:
    return [
        io.Int.Input("rows", default=2, min=1, max=8, tooltip=f"panels down the composite; {tooltip}"),
        io.Int.Input("cols", default=2, min=1, max=8, tooltip=f"panels across the composite; {tooltip}"),
    ]


class CompositeGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        panel = "pixels, a multiple of 16; 0 keeps the size of imported composites"
        return io.Schema(
            node_id="MVIC_CompositeGrid",
            display_name="Composite Grid",
            category=category("dataset"),
            description="Fits each set's views into one rows x cols composite (panel sides multiples of 16).",
            inputs=[
                MV_SETS.Input("mv_sets", tooltip="the sets from the Multi-View Loader"),
                *grid_inputs("rows x cols must equal the views per set"),
                io.Int.Input("panel_width", default=512, min=0, max=4096, step=16, tooltip=f"panel width in {panel}"),
                io.Int.Input("panel_height", default=512, min=0, max=4096, step=16, tooltip=f"panel height in {panel}"),
                io.Combo.Input(
                    "fit",
                    options=list(FIT_MODES),
                    default="crop",
                    tooltip="crop: centre crop; pad: letterbox; stretch distorts",
                ),
                io.String.Input("pad_color", default="#000000", optional=True, tooltip="letterbox colour for fit=pad"),
                io.Int.Input(
                    "divider_width",
                    default=0,
                    min=0,
                    max=64,
                    optional=True,
                    tooltip="painted over panel edges; 0 = none",
                ),
                io.String.Input("divider_color", default="#ffffff", optional=True, tooltip="colour of the dividers"),
                io.String.Input(
                    "marker_prefix",
                    default="",
                    optional=True,
                    tooltip="empty: [FOUR-VIEWS] etc.; or your own, e.g. [MOVIE-SHOTS]",
                ),
                io.String.Input(
                    "panel_marker",
                    default="",
                    optional=True,
                    tooltip="empty: [TOP-LEFT] etc.; or a pattern like [SCENE-{n}]",
                ),
                io.Float.Input(
                    "min_consistency",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    optional=True,
                    tooltip="drop sets whose views do not agree (consistency 0-1); 0 = keep all",
                ),
            ],
            outputs=[
                MV_COMPOSITES.Output(display_name="composites"),
                io.Image.Output(display_name="images"),
                io.String.Output(display_name="report"),
            ],
        )

    # A declarative table, kept compact: one argument a line would take it past 60 lines.
    # fmt: off
    @classmethod
    def execute(cls, mv_sets, rows, cols, panel_width, panel_height, fit, pad_color="#000000", divider_width=0,
                divider_color="#ffffff", marker_prefix="", panel_marker="", min_consistency=0.0) -> io.NodeOutput:
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
        return io.NodeOutput(result, images_to_tensor([c.image for c in result.items]),
                             "\n".join([result.report(), *lines]))
    # fmt: on


class SplitComposite(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MVIC_SplitComposite",
            display_name="Split Composite",
            category=category("sample"),
            description=(
                "Cuts composites into their panels (reading order): the exact inverse of CompositeGrid; on composites "
                "made elsewhere, cuts where the panels really meet (a few pixels off the exact fractions) and trims "
                "them to one size."
            ),
            inputs=[
                io.Image.Input("image", tooltip="one composite or a batch of them"),
                *grid_inputs("the layout the composite was made with"),
            ],
            outputs=[io.Image.Output(display_name="views")],
        )

    @classmethod
    def execute(cls, image, rows, cols) -> io.NodeOutput:
        return io.NodeOutput(split_views(image, rows, cols, find_seams=True))


NODES = [CompositeGrid, SplitComposite]
