"""mvic: the ComfyUI-free core of ComfyUI-MultiView-ICLoRA.

Stages, one module (or folder) each: sources -> loading/views -> layout/composites
-> captions -> export -> training -> sampling. Submodules are imported on first use (`mvic.layout`), so
importing the package is cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "captions",
    "composites",
    "consistency",
    "datatypes",
    "export",
    "images",
    "layout",
    "loading",
    "markers",
    "pipeline",
    "sampling",
    "sources",
    "training",
    "views",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
