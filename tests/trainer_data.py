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


def sd_scripts_and_tiny_models(dataset: Path) -> dict:
    """The real sd-scripts (skip when not configured), the tiny models and `dataset`, for real training tests."""
    import pytest
    import tiny_models
    from sdscripts_env import SKIP_REASON, sd_scripts_paths

    paths = sd_scripts_paths()
    if paths is None:
        pytest.skip(SKIP_REASON)
    files = {"flux": tiny_models.tiny_flux(), "clip_l": tiny_models.tiny_clip_l(), "t5xxl": tiny_models.zero_t5xxl(),
             "ae": tiny_models.tiny_ae()}
    return {"checkout": paths[0], "python": paths[1], "models": files, "dataset": dataset}


def tiny_trainer_inputs(setup: dict, lora_name: str, **overrides) -> dict:
    """LoRATrainer's inputs for a 4-step CPU run of `setup` (sd_scripts_and_tiny_models) in a real ComfyUI."""
    m, none = setup["models"], "(use path input)"
    inputs = {"dataset_dir": str(setup["dataset"]), "flux_model": none, "clip_l": none, "t5xxl": none, "ae": none,
              "lora_name": lora_name, "steps": 4, "rank": 4, "learning_rate": 1e-4, "vram_preset": "cpu",
              "save_every_n_steps": 2, "extra_args": "--t5xxl_max_token_length 64", "flux_path": str(m["flux"]),
              "clip_l_path": str(m["clip_l"]), "t5xxl_path": str(m["t5xxl"]), "ae_path": str(m["ae"])}
    return {**inputs, **overrides}


def comfyui_with_sd_scripts(setup: dict, base_dir: Path):
    """A real ComfyUI started with the setup's sd-scripts in its environment (skip without ComfyUI)."""
    import pytest
    from comfy_harness import ComfyServer, comfyui_paths

    if comfyui_paths() is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON)")
    env = {"SD_SCRIPTS_DIR": str(setup["checkout"]), "SD_SCRIPTS_PYTHON": setup["python"]}
    return ComfyServer(*comfyui_paths(), base_dir=base_dir, env=env).start()
