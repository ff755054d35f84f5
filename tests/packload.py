"""Load the node pack exactly as ComfyUI does: by file path, under its folder name.

Every test reaches the core through the pack (`<pack>.mvic`), never as a
top-level `mvic`, so the test process holds one copy of every dataclass, just
like ComfyUI's process does.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-MultiView-ICLoRA"


def add_comfyui_to_path() -> None:
    """The nodes are ComfyUI V3 nodes (comfy_api.latest): tests import them from the real ComfyUI
    snapshot (COMFYUI_DIR), as ComfyUI's own process has it on sys.path."""
    directory = os.environ.get("COMFYUI_DIR", "").strip()
    if not directory:
        raise RuntimeError("the node tests need ComfyUI's comfy_api: set COMFYUI_DIR to a ComfyUI checkout "
                           "(source /work/team/env.sh, or .ci/run)")
    if directory not in sys.path:
        sys.path.append(directory)


def load_pack(root: Path = ROOT, name: str = PACK_NAME):
    """What ComfyUI's nodes.load_custom_node does for a folder with __init__.py."""
    add_comfyui_to_path()
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pack = load_pack()


def mvic_module(name: str = ""):
    """`mvic_module("layout")` -> the module `<pack>.mvic.layout`."""
    return importlib.import_module(f"{PACK_NAME}.mvic" + (f".{name}" if name else ""))


NODES = pack.nodes.nodes_by_id()  # node ID -> V3 node class, as ComfyUI registers them


def node_class(key: str):
    return NODES[key]


mvic = mvic_module()
