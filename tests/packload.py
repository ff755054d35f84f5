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
    snapshot (COMFYUI_DIR), as ComfyUI's own process has it on sys.path. Without it the core still loads
    and the node tests skip (fail under MVIC_REQUIRE_REAL)."""
    directory = os.environ.get("COMFYUI_DIR", "").strip()
    if directory and directory not in sys.path:
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


def nodes_by_id() -> dict:
    """node ID -> V3 node class, as ComfyUI registers them; skips the test without ComfyUI's comfy_api."""
    try:
        nodes = importlib.import_module(f"{PACK_NAME}.nodes")
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("comfy_api"):
            raise
        import pytest

        pytest.skip(
            "node test: the nodes need ComfyUI's comfy_api: set COMFYUI_DIR to a ComfyUI checkout",
            allow_module_level=True,
        )
    return nodes.nodes_by_id()


def node_class(key: str):
    return nodes_by_id()[key]


mvic = mvic_module()
