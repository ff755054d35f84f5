"""MultiViewLoader: find multi-view sets and choose each set's views (mvic.loading)."""
from __future__ import annotations

import hashlib
import os

from ..mvic.loading import SELECTION_METHODS, load_multiview_sets
from ..mvic.sources import SOURCE_KINDS
from .comfy_io import images_to_tensor, resolve_input_path

PREVIEW_SIZE = 256


class MultiViewLoader:
    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = "Loads multi-view sets (folders, MVImgNet with COLMAP poses, videos, or the embedded sample) and picks the views of each set."
    RETURN_TYPES = ("MV_SETS", "IMAGE", "STRING")
    RETURN_NAMES = ("mv_sets", "preview", "report")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "source": (list(SOURCE_KINDS), {"default": "sample", "tooltip": "auto detects folder / MVImgNet / video; sample renders the embedded demo objects"}),
                "path": ("STRING", {"default": "", "tooltip": "Folder or video; relative paths start in ComfyUI's input folder. Ignored for 'sample'."}),
                "views": ("INT", {"default": 4, "min": 1, "max": 20}),
                "selection": (list(SELECTION_METHODS), {"default": "auto", "tooltip": "auto: by camera pose when poses exist, else evenly in frame order"}),
                "max_sets": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "0 = all sets"}),
            },
            "optional": {
                "reject_blurred": ("BOOLEAN", {"default": False}),
                "reject_duplicates": ("BOOLEAN", {"default": False}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, source, path, **_):
        return folder_fingerprint(resolve_input_path(path)) if source != "sample" else "sample"

    def load(self, source, path, views, selection, max_sets, reject_blurred=False, reject_duplicates=False):
        from ..mvic.composites import fitted_panels
        from ..mvic.layout import CompositeLayout

        sets = load_multiview_sets(source, resolve_input_path(path), views, selection, max_sets, reject_blurred, reject_duplicates)
        if not sets.sets:
            raise ValueError(f"MultiViewLoader: no usable set under {path!r}.\n{sets.report()}")
        thumb = CompositeLayout(1, 1, PREVIEW_SIZE, PREVIEW_SIZE)
        previews = [panel for s in sets.sets[:8] for panel in fitted_panels(s, thumb, "pad")]
        return (sets, images_to_tensor(previews), sets.report())


def folder_fingerprint(path: str) -> str:
    """Changes when any file under `path` is added, removed, resized or touched."""
    digest = hashlib.sha256(path.encode())
    if os.path.isfile(path):
        stat = os.stat(path)
        digest.update(f"{stat.st_size}|{stat.st_mtime_ns}".encode())
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            stat = os.stat(os.path.join(root, name))
            digest.update(f"{root}/{name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


NODE_CLASS_MAPPINGS = {"MVIC_MultiViewLoader": MultiViewLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"MVIC_MultiViewLoader": "MultiViewLoader"}
