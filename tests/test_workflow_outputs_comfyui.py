"""Same workflows, same outputs (issue 15: the nodes moved to ComfyUI's V3 schema): the shipped
workflows, and copies saved before the move (tests/fixtures/saved_workflows: the UI files, v1 and
v2, converted as the frontend converts them, and the v2 API files), run in the real ComfyUI on the
tiny models and give the same outputs bit for bit: the dataset's images and captions, the seeded
samplers' composites and views. Each copy must give what the shipped file gives in the same run, and
that must match the record (tests/fixtures/workflow_outputs.json).

The dataset does not depend on the CPU; sampled pixels do (torch picks its CPU kernels by instruction
set: AVX2, AVX512, ...), so they are recorded per CPU capability as ComfyUI's torch names it. The record
was made before the move on a CPU with native bf16, whose capability it did not keep; the AVX2 entries were
recorded after it (issue 11), with the move's equality shown by then, and again when the tests' overrides
began to shorten ComfyUI's T5 prompt (tests/workflow_overrides.py): an input of the test, not of the nodes. The
AVX512 entries were recorded with that prompt on an AMD Zen 4 (avx512_bf16), the copies again equal to the
shipped files in the same run. A CPU without an entry checks the copies against the shipped files only, and
says so.

The sampling workflows get a stand-in LoRA (zeros, our metadata) under the shipped name, as
tests/test_workflows_comfyui.py does when nothing was trained: the result does not depend on
sd-scripts' numerics. MVIC_RECORD_WORKFLOW_OUTPUTS=1 rewrites the record for this CPU (only ever before
a change whose outputs must stay the same).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import workflow_overrides
from comfy_harness import ComfyServer, comfyui_paths
from packload import ROOT

RECORD = ROOT / "tests" / "fixtures" / "workflow_outputs.json"
SAVED = ROOT / "tests" / "fixtures" / "saved_workflows"
NAMES = ["build_dataset", "text_to_views", "image_to_views"]  # the ones that run without sd-scripts
LORA = "mvic/multiview_iclora.safetensors"
RECORDING = os.environ.get("MVIC_RECORD_WORKFLOW_OUTPUTS", "").strip() not in ("", "0")


def _workflow_api():
    spec = importlib.util.spec_from_file_location("mvic_workflow_api", ROOT / "tools" / "workflow_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sources(name: str) -> dict[str, dict]:
    """label -> API prompt: the shipped file, the saved v2 API copy, the saved UI files converted."""
    converter = _workflow_api()
    prompts = {
        "shipped": json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text(encoding="utf-8")),
        "saved v2 api": json.loads((SAVED / "api" / f"{name}.v2.json").read_text(encoding="utf-8")),
    }
    for version in ("v1", "v2"):
        ui = json.loads((SAVED / f"{name}.{version}.json").read_text(encoding="utf-8"))
        prompts[f"saved {version} ui"] = converter.to_api(ui)
    return prompts


def _pixels_digest(path: Path) -> str:
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    return hashlib.sha256(str(array.shape).encode() + array.tobytes()).hexdigest()


def _dataset_digest(folder: Path) -> dict[str, str]:
    out = {}
    for path in sorted((folder / "images").iterdir()):
        out[path.name] = (
            _pixels_digest(path) if path.suffix == ".png" else hashlib.sha256(path.read_bytes()).hexdigest()
        )
    return out


def _sampled_digest(entry: dict, server: ComfyServer, prompt: dict) -> dict[str, str]:
    out = {}
    for node_id, output in sorted(entry["outputs"].items()):
        node = prompt[node_id]
        if node["class_type"] != "SaveImage":
            continue
        for index, image in enumerate(output.get("images", [])):
            path = server.base_dir / image["type"] / image["subfolder"] / image["filename"]
            out[f"{node['inputs']['filename_prefix']}#{index}"] = _pixels_digest(path)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if comfyui_paths() is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON) to a ComfyUI checkout")
    import tiny_models
    from PIL import Image

    models = tmp_path_factory.mktemp("outputs_models")
    folders = {}
    for relative, generator in workflow_overrides.MODEL_FILES.items():
        (models / relative).parent.mkdir(parents=True, exist_ok=True)
        (models / relative).symlink_to(getattr(tiny_models, generator)())
        folders[(models / relative).parent.name] = (models / relative).parent
    markers = {"prefix": "[FOUR-VIEWS]", "panels": ["[TOP-LEFT]", "[TOP-RIGHT]", "[BOTTOM-LEFT]", "[BOTTOM-RIGHT]"]}
    (models / "loras" / LORA).parent.mkdir(parents=True)
    tiny_models.stand_in_lora(
        models / "loras" / LORA,
        {"mvic_layout": json.dumps(workflow_overrides.COMPOSITE), "mvic_markers": json.dumps(markers)},
    )
    folders["loras"] = models / "loras"
    base = tmp_path_factory.mktemp("outputs_base")
    (base / "input").mkdir()
    with Image.open(ROOT / "docs" / "example_composite.png") as composite:  # LoadImage's shipped file name
        composite.convert("RGB").crop((0, 0, composite.width // 2, composite.height // 2)).save(
            base / "input" / "example.png"
        )
    env = {"MVIC_SETTINGS": str(base / "settings.json")}
    comfy = ComfyServer(
        *comfyui_paths(), base_dir=base, model_dirs=folders, flags=workflow_overrides.COMFYUI_FLAGS, env=env
    ).start()
    yield comfy
    comfy.stop()


@pytest.fixture(scope="module")
def record():
    recorded = json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.is_file() else {}
    yield recorded
    if RECORDING:
        RECORD.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def cpu_capability(server) -> str:
    """The instruction set ComfyUI's torch computes with on this CPU (its kernels, hence its pixels)."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([server.python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def _record_key(name: str, cpu_capability: str) -> str:
    return name if name == "build_dataset" else f"{name} on {cpu_capability}"


@pytest.mark.parametrize("name", NAMES)
def test_shipped_and_saved_workflows_give_the_recorded_outputs(server, record, cpu_capability, name):
    key, shipped = _record_key(name, cpu_capability), None
    for label, raw in _sources(name).items():
        prompt, _ = workflow_overrides.apply(raw)
        entry = server.run_prompt(prompt, timeout=900)
        if name == "build_dataset":
            digest = _dataset_digest(server.base_dir / "output" / "iclora_dataset")
        else:
            digest = _sampled_digest(entry, server, prompt)
        assert digest, f"{name} ({label}): no outputs"
        shipped = shipped or digest  # "shipped" comes first
        assert digest == shipped, f"{name} ({label}): outputs differ from the shipped workflow's"
    if RECORDING:
        record[key] = shipped
    if key in record:
        assert shipped == record[key], f"{key}: outputs differ from the record"
    else:
        warnings.warn(f"no recorded outputs for {key!r}: the saved copies were checked against the shipped files")
