"""Every shipped workflow, run in real ComfyUI (/prompt -> /history) on tiny random models.

The API files are run as shipped except for the overrides listed in tests/workflow_overrides.py
(composite size, steps, training steps and what tiny CPU training needs); a /prompt validation
error fails the test. The training workflows also need SD_SCRIPTS_DIR (+ SD_SCRIPTS_PYTHON).

Memory (24 GB, 2 cores): sd-scripts maps the 9.5 GB all-zero T5-XXL (page cache), ComfyUI with
the T5 in fp8 at ~10 GB. They never overlap: in full_pipeline FLUX is loaded only after training
(FluxLoaderAfterTraining), and each group of workflows gets its own ComfyUI process, stopped before
the next one starts, so no cached T5 sits in RAM while sd-scripts runs.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import workflow_overrides
from comfy_harness import ComfyServer, comfyui_paths
from packload import ROOT, mvic_module
from sdscripts_env import SKIP_REASON as SD_SKIP_REASON
from sdscripts_env import sd_scripts_paths

COMFY_SKIP_REASON = "real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout"

WORKFLOWS = ROOT / "workflows"
# Run order: the dataset first (train_lora trains on it), full_pipeline before the sampling workflows
# (they sample with the LoRA it trained).
ORDER = ["build_dataset", "train_lora", "full_pipeline", "text_to_views", "image_to_views"]
# Which ComfyUI process (and base folder) runs each workflow; one process at a time. The sampling
# workflows run in full_pipeline's process: nothing trains after them, and its loaded FLUX, T5 and
# VAE serve them as they would a user who samples after training.
PHASE = {
    "build_dataset": "dataset",
    "train_lora": "dataset",
    "full_pipeline": "pipeline",
    "text_to_views": "pipeline",
    "image_to_views": "pipeline",
}
BASE = {"dataset": "dataset", "pipeline": "pipeline"}
LORA = "mvic/multiview_iclora.safetensors"  # what the shipped trainers write and the sampling workflows pick
PANEL = workflow_overrides.COMPOSITE["panel_width"]
COMPOSITE_SIDE = 2 * PANEL
GIB = 2**30
MAX_RSS_WHILE_TRAINING_GIB = 2.5  # ComfyUI idles at ~1 GB; the tiny FLUX alone would add 2 GB, the T5 4.7 GB


def _available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / GIB
    return float("inf")


def _wait_for_memory(gib: float, timeout: float = 300.0) -> None:
    """On a shared box, wait until another job's memory is back before loading T5 / training."""
    started = time.monotonic()
    while _available_gib() < gib and time.monotonic() - started < timeout:
        time.sleep(2)
    if time.monotonic() - started > 1:
        print(
            f"\n[waited {time.monotonic() - started:.0f} s for {gib} GiB of free memory; {_available_gib():.1f} "
            "GiB now]"
        )


def _rss_gib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return 0.0


def _has_children(pid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                return True
    return False


class RssWhileTraining(threading.Thread):
    """ComfyUI's resident memory, sampled while it has a child process (sd-scripts) running."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            if _has_children(self.pid):
                self.samples.append(_rss_gib(self.pid))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


class Servers:
    """One ComfyUI at a time: asking for another phase stops the running one first."""

    def __init__(self, root: Path, model_dirs: dict[str, Path], env: dict[str, str]):
        self.root, self.model_dirs, self.env = root, model_dirs, env
        self.phase, self.server = None, None

    def get(self, phase: str) -> ComfyServer:
        if self.phase != phase or self.server.process.poll() is not None:
            self.stop()
            base = self.root / BASE[phase]
            (base / "user" / "default").mkdir(parents=True, exist_ok=True)
            self.server = ComfyServer(
                *comfyui_paths(),
                base_dir=base,
                model_dirs=self.model_dirs,
                flags=workflow_overrides.COMFYUI_FLAGS,
                env=self.env,
            ).start()
            self.phase = phase
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.phase, self.server = None, None


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """The tiny models, linked into ComfyUI model folders under the names the workflows use."""
    if comfyui_paths() is None:
        pytest.skip(COMFY_SKIP_REASON)
    import tiny_models

    root = tmp_path_factory.mktemp("workflow_models")
    folders = {}
    for relative, generator in workflow_overrides.MODEL_FILES.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(getattr(tiny_models, generator)())
        folders[target.parent.name] = target.parent
    return folders


@pytest.fixture(scope="module")
def servers(tmp_path_factory, model_dirs):
    """The trainer comes from local settings written by `python -m mvic setup-trainer` (with an existing
    Python: no install), as a user sets it up; ComfyUI gets no SD_SCRIPTS_DIR."""
    root = tmp_path_factory.mktemp("workflow_runs")
    env = {"MVIC_SETTINGS": str(root / "settings.json"), "SD_SCRIPTS_DIR": "", "SD_SCRIPTS_PYTHON": ""}
    sd = sd_scripts_paths()
    if sd is not None:
        setup = subprocess.run(
            [
                sys.executable,
                "-m",
                "mvic",
                "setup-trainer",
                "--sd-scripts",
                str(sd[0]),
                "--python",
                sd[1],
                "--settings",
                env["MVIC_SETTINGS"],
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert setup.returncode == 0 and "ready to train" in setup.stdout, setup.stdout + setup.stderr
    pool = Servers(root, model_dirs, env)
    yield pool
    pool.stop()


def _api(name: str) -> tuple[dict, list[str]]:
    return workflow_overrides.apply(json.loads((WORKFLOWS / "api" / f"{name}.json").read_text(encoding="utf-8")))


def _run(server: ComfyServer, name: str) -> dict:
    prompt, changes = _api(name)
    started = time.monotonic()
    entry = server.run_prompt(prompt, timeout=900)
    print(f"\n[{name}: {time.monotonic() - started:.1f} s in ComfyUI; overrides: {'; '.join(changes) or 'none'}]")
    return entry


def _saved_images(entry: dict, server: ComfyServer, node_class: str, prompt: dict) -> list[Path]:
    """Files written by the nodes of one class, from /history, checked on disk."""
    files = []
    for node_id, output in entry["outputs"].items():
        if prompt[node_id]["class_type"] != node_class:
            continue
        for image in output.get("images", []):
            folder = server.base_dir / image["type"] / image["subfolder"]
            assert (folder / image["filename"]).is_file(), image
            files.append(folder / image["filename"])
    return files


def _image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _saved_by_prefix(entry: dict, server: ComfyServer, prompt: dict, prefix: str) -> list[Path]:
    files = []
    for node_id, output in entry["outputs"].items():
        node = prompt[node_id]
        if node["class_type"] == "SaveImage" and node["inputs"]["filename_prefix"] == prefix:
            for image in output.get("images", []):
                assert image["type"] == "output"
                path = server.base_dir / "output" / image["subfolder"] / image["filename"]
                assert path.is_file(), image
                files.append(path)
    return sorted(files)


def _assert_sampled(entry: dict, server: ComfyServer, prompt: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """One composite and its four views, in the layout the LoRA was trained on (2x2 of 64 px)."""
    (composite_file,) = _saved_by_prefix(entry, server, prompt, "multiview/composite")
    view_files = _saved_by_prefix(entry, server, prompt, "multiview/view")
    composite = _image(composite_file)
    assert composite.shape == (COMPOSITE_SIDE, COMPOSITE_SIDE, 3)
    assert len(view_files) == 4
    views = [_image(path) for path in view_files]
    assert all(view.shape == (PANEL, PANEL, 3) for view in views)
    tiles = [composite[r * PANEL : (r + 1) * PANEL, c * PANEL : (c + 1) * PANEL] for r in range(2) for c in range(2)]
    assert all(np.array_equal(view, tile) for view, tile in zip(views, tiles))  # split exactly, reading order
    return composite, views


def _assert_dataset(folder: Path) -> None:
    assert all(
        (folder / name).is_file() for name in ("dataset.toml", "metadata.jsonl", "ai_toolkit.yaml", "contact_sheet.png")
    )
    images = sorted((folder / "images").glob("*.png"))
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    assert images and len(images) == len(records)
    for image in images:
        assert _image(image).shape == (COMPOSITE_SIDE, COMPOSITE_SIDE, 3)
        caption = image.with_suffix(".txt").read_text(encoding="utf-8")
        assert caption.startswith("[FOUR-VIEWS]") and all(
            m in caption for m in ("[TOP-LEFT]", "[TOP-RIGHT]", "[BOTTOM-LEFT]", "[BOTTOM-RIGHT]")
        )


def _lora_metadata(path: Path) -> dict:
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length)).get("__metadata__", {})


def _assert_trained_lora(base: Path) -> Path:
    lora = base / "models" / "loras" / LORA
    meta = _lora_metadata(lora)
    assert json.loads(meta["mvic_layout"]) == workflow_overrides.COMPOSITE
    assert meta["mvic_steps"] == str(workflow_overrides.TRAINING_STEPS)
    assert json.loads(meta["mvic_markers"])["prefix"] == "[FOUR-VIEWS]"
    log = (base / "output" / "mvic_runs" / "multiview_iclora" / "train.log").read_text(errors="replace")
    assert f"{workflow_overrides.TRAINING_STEPS}/{workflow_overrides.TRAINING_STEPS}" in log
    return lora


def _needs_sd_scripts():
    if sd_scripts_paths() is None:
        pytest.skip(SD_SKIP_REASON)


def test_every_shipped_workflow_is_run_here():
    assert sorted(ORDER) == sorted(p.stem for p in (WORKFLOWS / "api").glob("*.json"))
    assert set(PHASE) == set(ORDER)


def test_build_dataset(servers):
    server = servers.get(PHASE["build_dataset"])
    prompt, _ = _api("build_dataset")
    entry = _run(server, "build_dataset")
    _assert_dataset(server.base_dir / "output" / "iclora_dataset")
    assert _saved_images(entry, server, "PreviewImage", prompt)  # the composites preview


def test_train_lora(servers):
    _needs_sd_scripts()
    server = servers.get(PHASE["train_lora"])
    dataset = server.base_dir / "output" / "iclora_dataset"
    if not (dataset / "dataset.toml").is_file():  # run alone: make the dataset the way users do
        _run(server, "build_dataset")
    _wait_for_memory(13)
    prompt, _ = _api("train_lora")
    entry = _run(server, "train_lora")
    _assert_trained_lora(server.base_dir)
    (curve,) = _saved_images(entry, server, "PreviewImage", prompt)
    assert _image(curve).shape[2] == 3


def test_full_pipeline_trains_and_samples_the_same_tiny_flux(servers, model_dirs):
    _needs_sd_scripts()
    prompt, _ = _api("full_pipeline")
    trainer = next(e for e in prompt.values() if e["class_type"] == "MVIC_LoRATrainer")["inputs"]
    loader = next(e for e in prompt.values() if e["class_type"] == "MVIC_FluxLoaderAfterTraining")["inputs"]
    assert (model_dirs["diffusion_models"] / trainer["flux_model"]).resolve() == (
        model_dirs["diffusion_models"] / loader["unet_name"]
    ).resolve()
    assert (trainer["clip_l"], trainer["t5xxl"], trainer["ae"]) == (
        loader["clip_name1"],
        loader["clip_name2"],
        loader["vae_name"],
    )
    server = servers.get(PHASE["full_pipeline"])
    _wait_for_memory(13)
    with RssWhileTraining(server.process.pid) as watch:
        entry = _run(server, "full_pipeline")
    # FLUX (2 GB here in fp32) and the T5 (4.7 GB in fp8) were not in ComfyUI's memory while sd-scripts ran.
    print(
        f"[ComfyUI RSS while sd-scripts ran: {len(watch.samples)} samples, max {max(watch.samples, default=0):.2f} GiB]"
    )
    assert len(watch.samples) > 10 and max(watch.samples) < MAX_RSS_WHILE_TRAINING_GIB
    _assert_dataset(server.base_dir / "output" / "iclora_dataset")
    _assert_trained_lora(server.base_dir)
    _assert_sampled(entry, server, prompt)  # 2x2 of 64 px: the layout came from the trained LoRA's metadata
    # Queued again unchanged: nothing trains or loads again (the workflow's Note promises it).
    started = time.monotonic()
    again = server.run_prompt(prompt, timeout=300)
    assert set(_cached_nodes(again)) == set(prompt), f"re-ran: {sorted(set(prompt) - set(_cached_nodes(again)))}"
    assert time.monotonic() - started < 30


def _cached_nodes(entry: dict) -> list[str]:
    return [
        node for event, data in entry["status"]["messages"] if event == "execution_cached" for node in data["nodes"]
    ]


def _lora_for_sampling(base: Path) -> str:
    """The LoRA full_pipeline trained here; without sd-scripts (or run alone) a one-module LoRA of
    zeros with our metadata stands in for it under the same name."""
    lora = base / "models" / "loras" / LORA
    if lora.is_file():
        return (
            "trained by full_pipeline"
            if "mvic_steps" in _lora_metadata(lora)
            else "stand-in (no trained LoRA in this run)"
        )
    import tiny_models

    markers = {"prefix": "[FOUR-VIEWS]", "panels": ["[TOP-LEFT]", "[TOP-RIGHT]", "[BOTTOM-LEFT]", "[BOTTOM-RIGHT]"]}
    tiny_models.stand_in_lora(
        lora, {"mvic_layout": json.dumps(workflow_overrides.COMPOSITE), "mvic_markers": json.dumps(markers)}
    )
    return "stand-in (no trained LoRA in this run)"


def test_text_to_views(servers):
    base = servers.root / BASE[PHASE["text_to_views"]]
    which = _lora_for_sampling(base)
    _wait_for_memory(10)
    server = servers.get(PHASE["text_to_views"])
    prompt, _ = _api("text_to_views")
    entry = _run(server, "text_to_views")
    print(f"[text_to_views LoRA: {which}]")
    composite, _ = _assert_sampled(entry, server, prompt)
    assert composite.std() > 0  # an image, not a constant


def _reference_photo(input_dir: Path) -> np.ndarray:
    """LoadImage's shipped file name (example.png): one view of the demo composite."""
    from PIL import Image

    input_dir.mkdir(parents=True, exist_ok=True)
    with Image.open(ROOT / "docs" / "example_composite.png") as composite:
        photo = composite.convert("RGB").crop((0, 0, composite.width // 2, composite.height // 2))
    photo.save(input_dir / "example.png")
    return np.asarray(photo)


def test_image_to_views(servers):
    base = servers.root / BASE[PHASE["image_to_views"]]
    which = _lora_for_sampling(base)
    photo = _reference_photo(base / "input")
    _wait_for_memory(10)
    server = servers.get(PHASE["image_to_views"])
    prompt, _ = _api("image_to_views")
    sampler = next(e for e in prompt.values() if e["class_type"] == "MVIC_ICLoRASampler")["inputs"]
    assert sampler["reference_panels"] == "1"
    entry = _run(server, "image_to_views")
    print(f"[image_to_views LoRA: {which}]")
    composite, views = _assert_sampled(entry, server, prompt)
    # Panel 1 is the reference, fitted as CompositeGrid fits views (SaveImage truncates to 8 bits: +-1).
    from PIL import Image

    expected = np.asarray(
        mvic_module("layout").fit_panel(Image.fromarray(photo), PANEL, PANEL, sampler["reference_fit"])
    )
    assert np.abs(views[0].astype(int) - expected.astype(int)).max() <= 1
    assert np.abs(views[1].astype(int) - expected.astype(int)).max() > 8  # the other panels were generated
