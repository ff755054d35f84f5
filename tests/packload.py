"""Load the node pack exactly as ComfyUI does: by file path, under its folder name.

Every test reaches the core through the pack (`<pack>.mvic`), never as a
top-level `mvic`, so the test process holds one copy of every dataclass, just
like ComfyUI's process does.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-MultiView-ICLoRA"


def load_pack(root: Path = ROOT, name: str = PACK_NAME):
    """What ComfyUI's nodes.load_custom_node does for a folder with __init__.py."""
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


def node_class(key: str):
    return pack.NODE_CLASS_MAPPINGS[key]


mvic = mvic_module()
