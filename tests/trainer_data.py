"""Small real datasets (written by the pack's own saver) and sd-scripts stand-ins for trainer tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from packload import ROOT, mvic_module


def small_dataset(
    folder: Path, names=("a", "b"), rows: int = 1, cols: int = 2, panel: int = 32, trigger: str = "mvtok"
) -> Path:
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


# What the real training tests pass to sd-scripts: their captions and prompts are short, and each T5 token
# costs in every T5-XXL pass and every FLUX step on a CPU (sd-scripts' own default is 512).
TINY_T5 = "--t5xxl_max_token_length 32"


def wide_dataset(folder: Path) -> Path:
    """Two 1x2 composites of 64 px panels from the sample data: 128x64, not square, so a wrong resolution shows."""
    layout = mvic_module("layout").CompositeLayout(1, 2, 64, 64)
    loaded = mvic_module("loading").load_multiview_sets("sample", "", 2, max_sets=4)
    loaded.sets = loaded.sets[::2][:2]
    composites = mvic_module("composites").build_composites(loaded, layout)
    mvic_module("export.dataset").save_dataset(composites, folder)
    return folder


def copy_checkout(source: Path, target: Path) -> Path:
    """A copy of an sd-scripts checkout without its venv (4 MB), to change without touching the original."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("venv", ".venv", "__pycache__", ".git", "*.egg-info"))
    return target


def mvic_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mvic", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def sd_scripts_and_tiny_models(dataset: Path) -> dict:
    """The real sd-scripts (skip when not configured), the tiny models and `dataset`, for real training tests."""
    import pytest
    import tiny_models
    from sdscripts_env import SKIP_REASON, sd_scripts_paths

    paths = sd_scripts_paths()
    if paths is None:
        pytest.skip(SKIP_REASON)
    files = {
        "flux": tiny_models.tiny_flux(),
        "clip_l": tiny_models.tiny_clip_l(),
        "t5xxl": tiny_models.zero_t5xxl(),
        "ae": tiny_models.tiny_ae(),
    }
    return {"checkout": paths[0], "python": paths[1], "models": files, "dataset": dataset}


def cli_train_command(setup: dict, name: str, run_dir: Path, loras_dir: Path, *more: str) -> list[str]:
    """`python -m mvic train` for a 4-step CPU run of `setup` (sd_scripts_and_tiny_models), saving every 2 steps."""
    m = setup["models"]
    return [
        sys.executable,
        "-m",
        "mvic",
        "train",
        *("--dataset", str(setup["dataset"]), "--flux", str(m["flux"]), "--clip-l", str(m["clip_l"])),
        *("--t5xxl", str(m["t5xxl"]), "--ae", str(m["ae"]), "--name", name),
        *("--run-dir", str(run_dir), "--loras-dir", str(loras_dir), "--steps", "4", "--save-every", "2"),
        *("--preset", "cpu", "--sd-scripts", str(setup["checkout"]), "--extra-args", TINY_T5),
        *more,
    ]


# Denoising steps of the shared runs' previews (sd-scripts' default 20 costs ~1 min a preview on a 2-core
# CPU); 3, so that their progress bars are told apart from the 4 training steps' and the 2 images' caching.
PREVIEW_STEPS = 3


def run_cli_training(base: Path) -> dict:
    """One `python -m mvic train` of the wide dataset, 4 steps, previews every 2 steps: what the CLI shows and
    writes, for every test that reads it (one sd-scripts run instead of one per test)."""
    setup = sd_scripts_and_tiny_models(wide_dataset(base / "dataset"))
    run, loras = base / "run", base / "loras"
    command = cli_train_command(setup, "wide", run, loras, "--sample-every", "2", "--sample-steps", str(PREVIEW_STEPS))
    env = {**os.environ, "SD_SCRIPTS_PYTHON": setup["python"], "MVIC_TEST_MARKER": "not-recorded"}
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500, env=env)
    return {"setup": setup, "command": command, "run": run, "loras": loras, "out": out}


# The workflow the frontend would send with the node run (kept in started_by.json).
NODE_WORKFLOW = {"last_node_id": 7, "nodes": [{"id": 7, "type": "MVIC_LoRATrainer"}], "links": [], "version": 0.4}


def run_node_training(base: Path) -> dict:
    """LoRATrainer (node "7") in a real ComfyUI on the wide dataset, 4 steps, previews every 2 steps, its curve
    and best checkpoint shown by PreviewImage / PreviewAny: the socket's frames and events and the history
    entry, for every test that reads them (one training instead of one per test)."""
    import uuid

    from comfy_harness import receive_until_done
    from websockets.sync.client import connect

    setup = sd_scripts_and_tiny_models(wide_dataset(base / "dataset"))
    server = comfyui_with_sd_scripts(setup, base / "comfy")
    prompt = {
        "7": {
            "class_type": "MVIC_LoRATrainer",
            "inputs": tiny_trainer_inputs(setup, "wide", sample_every_n_steps=2, preview_steps=PREVIEW_STEPS),
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["7", 3]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["7", 4]}},
    }
    client = uuid.uuid4().hex
    extra = {"extra_pnginfo": {"workflow": NODE_WORKFLOW}}
    try:
        # No keepalive pings: a ComfyUI busy on a loaded 2-core box may answer them late.
        url = f"ws://127.0.0.1:{server.port}/ws?clientId={client}"
        with connect(url, max_size=2**26, ping_interval=None, open_timeout=60) as socket:
            queued = server.post("/prompt", {"prompt": prompt, "client_id": client, "extra_data": extra})
            frames, events = receive_until_done(socket, queued["prompt_id"], timeout=1500)
        entry = server.get(f"/history/{queued['prompt_id']}")[queued["prompt_id"]]
    finally:
        server.stop()
    comfy = base / "comfy"
    run = comfy / "output" / "mvic_runs" / "wide"
    return {"comfy": comfy, "run": run, "prompt": prompt, "frames": frames, "events": events, "entry": entry}


def tiny_trainer_inputs(setup: dict, lora_name: str, **overrides) -> dict:
    """LoRATrainer's inputs for a 4-step CPU run of `setup` in the ComfyUI of comfyui_with_sd_scripts: the
    dataset inside its output/, the model files by name inside its model folders."""
    m, none = setup["models"], "(use path input)"
    inputs = {
        "dataset_dir": "dataset",
        "flux_model": none,
        "clip_l": none,
        "t5xxl": none,
        "ae": none,
        "lora_name": lora_name,
        "steps": 4,
        "rank": 4,
        "learning_rate": 1e-4,
        "vram_preset": "cpu",
        "save_every_n_steps": 2,
        "extra_args": TINY_T5,
        "flux_path": m["flux"].name,
        "clip_l_path": m["clip_l"].name,
        "t5xxl_path": m["t5xxl"].name,
        "ae_path": m["ae"].name,
    }
    return {**inputs, **overrides}


def comfyui_with_sd_scripts(setup: dict, base_dir: Path, checkout: Path | None = None):
    """A real ComfyUI with the setup's sd-scripts (or `checkout`) in its environment, the dataset copied
    into its output/dataset and the tiny models linked into its model folders (skip without ComfyUI)."""
    import pytest
    from comfy_harness import ComfyServer, comfyui_paths

    if comfyui_paths() is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON)")
    shutil.copytree(setup["dataset"], base_dir / "output" / "dataset")
    folders = {}
    for key, kind in (
        ("flux", "diffusion_models"),
        ("clip_l", "text_encoders"),
        ("t5xxl", "text_encoders"),
        ("ae", "vae"),
    ):
        folders[kind] = base_dir / "model_links" / kind
        folders[kind].mkdir(parents=True, exist_ok=True)
        (folders[kind] / setup["models"][key].name).symlink_to(setup["models"][key])
    env = {"SD_SCRIPTS_DIR": str(checkout or setup["checkout"]), "SD_SCRIPTS_PYTHON": setup["python"]}
    return ComfyServer(*comfyui_paths(), base_dir=base_dir, model_dirs=folders, env=env).start()
