"""Small real datasets (written by the pack's own saver) and sd-scripts stand-ins for trainer tests."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from packload import ROOT, mvic_module


def small_dataset(folder: Path, names=("a", "b"), rows: int = 1, cols: int = 2, panel: int = 32, trigger: str = "mvtok") -> Path:
    """A SaveICLoRADataset folder of tiny composites with template captions."""
    datatypes, layout_mod, markers = mvic_module("datatypes"), mvic_module("layout"), mvic_module("markers")
    layout = layout_mod.CompositeLayout(rows, cols, panel, panel)
    items = []
    for name in names:
        image = np.full((rows * panel, cols * panel, 3), ord(name[0]), np.uint8)
        panels = [datatypes.PanelSource(name, "mug", f"/nowhere/{name}{i}.jpg", i) for i in range(rows * cols)]
        items.append(datatypes.Composite(name, "mug", layout, markers.markers_for(rows, cols), image, panels))
    mvic_module("export.dataset").save_dataset(datatypes.Composites(items), folder, trigger=trigger)
    return folder


def copy_checkout(source: Path, target: Path) -> Path:
    """A copy of an sd-scripts checkout without its venv (4 MB), to change without touching the original."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("venv", ".venv", "__pycache__", ".git", "*.egg-info"))
    return target


def mvic_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mvic", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
