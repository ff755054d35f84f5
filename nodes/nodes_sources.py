"""MultiViewLoader: find multi-view sets and choose each set's views (mvic.loading)."""

from __future__ import annotations

import hashlib
import os

from comfy_api.latest import io

from ..mvic.loading import SELECTION_METHODS, load_multiview_sets
from ..mvic.sources import SOURCE_KINDS
from .comfy_io import category, confined_input_path, images_to_tensor

PREVIEW_SIZE = 256


class MultiViewLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MVIC_MultiViewLoader",
            display_name="Multi-View Loader",
            category=category("dataset"),
            description=(
                "Loads multi-view sets (folders, MVImgNet with COLMAP poses, videos, or the embedded sample) "
                "and picks the views of each set."
            ),
            inputs=[
                io.Combo.Input(
                    "source",
                    options=list(SOURCE_KINDS),
                    default="sample",
                    tooltip=(
                        "auto detects folder / MVImgNet / video; composites: finished composites + same-name .txt "
                        "captions; sample renders the embedded demo objects"
                    ),
                ),
                io.String.Input(
                    "path",
                    default="",
                    tooltip=(
                        "Folder or video inside ComfyUI's input folder (relative path). An absolute path works only "
                        "under a folder allowed on this machine: python -m mvic config allow-folder DIR. "
                        "Ignored for 'sample'."
                    ),
                ),
                io.Int.Input(
                    "views", default=4, min=1, max=20, tooltip="views taken from each set (rows x cols later)"
                ),
                io.Combo.Input(
                    "selection",
                    options=list(SELECTION_METHODS),
                    default="auto",
                    tooltip="auto: by camera pose when poses exist, else evenly in frame order",
                ),
                io.Int.Input("max_sets", default=0, min=0, max=100000, tooltip="0 = all sets"),
                io.Boolean.Input(
                    "reject_blurred",
                    default=False,
                    optional=True,
                    tooltip="skip blurred frames when choosing the views",
                ),
                io.Boolean.Input(
                    "reject_duplicates",
                    default=False,
                    optional=True,
                    tooltip="skip frames that repeat another one when choosing the views",
                ),
            ],
            outputs=[
                io.Custom("MV_SETS").Output(display_name="mv_sets"),
                io.Image.Output(display_name="preview"),
                io.String.Output(display_name="report"),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, source, path, **_):
        """Never raises (ComfyUI would only log it): a refused path's fingerprint is its error,
        and execute() reports it properly."""
        if source == "sample":
            return "sample"
        try:
            return folder_fingerprint(str(confined_input_path(path, "MultiViewLoader.path")))
        except (ValueError, OSError) as exc:
            return f"unusable path: {exc}"

    @classmethod
    def execute(
        cls, source, path, views, selection, max_sets, reject_blurred=False, reject_duplicates=False
    ) -> io.NodeOutput:
        from ..mvic.composites import fitted_panels
        from ..mvic.layout import CompositeLayout

        # 'sample' never takes a path from the workflow: the sample data lives in its own cache.
        folder = "" if source == "sample" else confined_input_path(path, "MultiViewLoader.path")
        sets = load_multiview_sets(source, folder, views, selection, max_sets, reject_blurred, reject_duplicates)
        if not sets.sets:
            raise ValueError(f"MultiViewLoader: no usable set under {path!r}.\n{sets.report()}")
        thumb = CompositeLayout(1, 1, PREVIEW_SIZE, PREVIEW_SIZE)
        previews = [panel for s in sets.sets[:8] for panel in fitted_panels(s, thumb, "pad")]
        return io.NodeOutput(sets, images_to_tensor(previews), sets.report())


def folder_fingerprint(path: str) -> str:
    """Changes when any file under `path` is added, removed, resized or touched. Entries that
    vanish or dangle (a link to nothing) count by their link's own data, never raise."""
    digest = hashlib.sha256(os.fsencode(path))
    digest.update(_stat_key(path))
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.fsencode(full) + b"|" + _stat_key(full))
    return digest.hexdigest()


def _stat_key(path: str) -> bytes:
    try:
        st = os.stat(path)
    except OSError:
        try:
            st = os.lstat(path)
        except OSError:
            return b"missing"
    return f"{st.st_size}|{st.st_mtime_ns}".encode()


NODES = [MultiViewLoader]
