"""The few places where nodes touch ComfyUI's helpers or torch (folders, progress, images).

The node schemas are ComfyUI's V3 `comfy_api.latest`, and importing it imports ComfyUI's
folder_paths too. So "inside ComfyUI" means a ComfyUI process that parsed its command line
(main.py, or a script set up like it): only there do nodes use ComfyUI's folders, progress bar
and model management. Elsewhere (tests and benchmarks calling `Node.execute`) the folders
are the working directory and progress is silent, as before the V3 move."""

from __future__ import annotations

import sys
from pathlib import Path

PACK_CATEGORY = "MultiView ICLoRA"


def category(stage: str) -> str:
    """The Add Node menu's folder for one stage: dataset, train or sample."""
    return f"{PACK_CATEGORY}/{stage}"


def images_to_tensor(arrays):
    """List of H x W x 3 uint8 arrays (same size) -> ComfyUI IMAGE (B, H, W, 3) float32 in 0..1."""
    import numpy as np
    import torch

    batch = np.stack(arrays).astype(np.float32) / 255.0
    return torch.from_numpy(batch)


def tensor_to_images(image):
    """ComfyUI IMAGE -> list of H x W x 3 uint8 arrays."""
    import numpy as np

    array = image.detach().cpu().float().clamp(0, 1).numpy()
    if array.ndim == 3:
        array = array[None]
    return [np.round(frame[..., :3] * 255.0).astype(np.uint8) for frame in array]


def split_views(image, rows: int, cols: int, find_seams: bool = False):
    """ComfyUI IMAGE of composites -> IMAGE of their panels, composite by composite in reading order.
    Exact fractions (what CompositeGrid and the sampler make), or with find_seams the seams found
    near them (composites made elsewhere), every panel trimmed around its centre to the smallest.
    Slicing the float tensor keeps the values bit-exact."""
    import torch

    if find_seams:
        from ..mvic.seams import equal_size_boxes, panel_boxes

        found = [
            (index, box)
            for index, frame in enumerate(tensor_to_images(image))
            for box in panel_boxes(frame, rows, cols)[0]
        ]
        boxes = list(zip([index for index, _ in found], equal_size_boxes([box for _, box in found])))
    else:
        from ..mvic.layout import split_boxes

        grid = split_boxes(image.shape[1], image.shape[2], rows, cols)
        boxes = [(index, box) for index in range(image.shape[0]) for box in grid]
    return torch.cat([image[index : index + 1, t:b, l:r] for index, (t, b, l, r) in boxes], dim=0)


def preview_images(arrays, prefix: str = "mvic") -> list[dict]:
    """H x W x 3 uint8 arrays saved as PNGs in ComfyUI's temp folder, as a node's UI shows them
    (what PreviewImage does); [] outside ComfyUI."""
    import uuid

    from PIL import Image

    fp = _folder_paths()
    if fp is None:
        return []
    folder = Path(fp.get_temp_directory())
    folder.mkdir(parents=True, exist_ok=True)
    shown = []
    for array in arrays:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}.png"
        Image.fromarray(array).save(folder / name, compress_level=1)
        shown.append({"filename": name, "subfolder": "", "type": "temp"})
    return shown


def inside_comfyui() -> bool:
    options = sys.modules.get("comfy.options")
    return bool(options is not None and options.args_parsing)


def _folder_paths():
    if not inside_comfyui():
        return None
    import folder_paths  # ComfyUI's module

    return folder_paths


class Progress:
    """ComfyUI's progress bar when running inside ComfyUI; silent otherwise."""

    def __init__(self, total: int):
        self._bar = None
        if inside_comfyui():
            from comfy.utils import ProgressBar

            self._bar = ProgressBar(max(1, total))
        self._node_id = _executing_node_id()  # callbacks may come from another thread: remember it now

    def __call__(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update_absolute(done, total)

    def show(self, done: int, total: int, image) -> None:
        """Progress with a picture: ComfyUI's live preview in the node, as samplers show theirs."""
        if self._bar is not None:
            from PIL import Image

            # ComfyUI scales a preview to max_size: up to 1024 px, never up.
            self._bar.update_absolute(done, total, ("PNG", Image.fromarray(image), min(1024, max(image.shape[:2]))))

    def text(self, message: str) -> None:
        """A line of text under the node (ComfyUI's progress text), as the bar's caption."""
        if self._bar is None or self._node_id is None:
            return
        from server import PromptServer

        PromptServer.instance.send_progress_text(message, self._node_id)


def _executing_node_id() -> str | None:
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None
    context = get_executing_context()
    return context.node_id if context is not None else None


def check_interrupt() -> None:
    if not inside_comfyui():
        return
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()


def model_choices(folder: str) -> list[str]:
    """File names ComfyUI knows in a model folder (empty outside ComfyUI)."""
    fp = _folder_paths()
    return sorted(fp.get_filename_list(folder)) if fp else []


def model_path(folder: str, name: str) -> str:
    fp = _folder_paths()
    found = fp.get_full_path(folder, name) if fp and name else None
    return found or name


def loras_folder() -> Path:
    fp = _folder_paths()
    return Path(fp.get_folder_paths("loras")[0]) if fp else Path.cwd() / "models" / "loras"


def free_comfy_memory() -> None:
    """Unload ComfyUI's models so sd-scripts gets the GPU (no-op outside ComfyUI)."""
    if not inside_comfyui():
        return
    import comfy.model_management as mm

    mm.unload_all_models()
    mm.soft_empty_cache()


def interrupt_requested() -> bool:
    if not inside_comfyui():
        return False
    import comfy.model_management as mm

    return mm.processing_interrupted()


def local_settings():
    """This machine's settings (mvic/settings.py), ComfyUI's user folder first when there is one."""
    from ..mvic.settings import load_settings

    fp = _folder_paths()
    return load_settings(fp.get_user_directory() if fp else None)


def input_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_input_directory()) if fp else Path.cwd()


def output_directory() -> Path:
    fp = _folder_paths()
    return Path(fp.get_output_directory()) if fp else Path.cwd()


def confined_input_path(text: str, what: str) -> Path:
    """A widget's path to read: inside ComfyUI's input folder, or under a folder allowed in local settings."""
    from ..mvic.paths import confined_input

    return confined_input(text, input_directory(), what, local_settings().readable_folders())


def confined_output_path(text: str, what: str) -> Path:
    """A widget's path to write: inside ComfyUI's output folder, never out of it."""
    from ..mvic.paths import confined_output

    return confined_output(text, output_directory(), what)


def model_folders(kind: str) -> list[Path]:
    """ComfyUI's folders for a model kind ('loras', 'vae', ...); outside ComfyUI ./models/<kind>."""
    fp = _folder_paths()
    return [Path(p) for p in fp.get_folder_paths(kind)] if fp else [Path.cwd() / "models" / kind]


def confined_model_path(text: str, kind: str, what: str) -> Path:
    """A widget's model file: relative to one of ComfyUI's folders for `kind`, or absolute inside one;
    never a file elsewhere. Links the user put into a model folder are followed, as ComfyUI's own
    loaders do (a workflow cannot make links); '..' cannot leave. Which folders exist is this
    machine's extra_model_paths.yaml."""
    import os

    from ..mvic.paths import PathNotAllowed

    folders = [Path(os.path.normpath(os.path.abspath(f))) for f in model_folders(kind)]
    path = Path(text.strip()).expanduser()
    candidates = [path] if path.is_absolute() else [folder / path for folder in folders]
    inside = [Path(os.path.normpath(c)) for c in candidates]
    inside = [c for c in inside if any(f in c.parents for f in folders)]
    if not inside:
        raise PathNotAllowed(
            f"{what} {text.strip()!r} is outside ComfyUI's {kind} folders ({', '.join(map(str, folders))}): "
            f"put the file there and pick it from the list, or add its folder to this machine's ComfyUI "
            f"extra_model_paths.yaml (a '{kind}:' entry) - a workflow cannot name files elsewhere"
        )
    return next((c for c in inside if c.is_file()), inside[0])
