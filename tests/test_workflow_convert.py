"""Issue 14.4: tools/workflow_api.py converts workflows saved by older or newer frontends, or for
other versions of a node, the way ComfyUI's frontend loads them. The In-Context-LoRA workflow shape is a
hand-made fixture (tests/fixtures/workflow_iclora_film_storyboard_2024.json) with ComfyUI 0.8.0's
definitions of its core nodes (tests/fixtures/object_info_iclora.json); test_workflows_browser.py checks the
same conversions against the real frontend's graphToPrompt."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from packload import ROOT
from packload import nodes_by_id as _nodes_by_id  # noqa: E402

_nodes_by_id()  # our V3 nodes need ComfyUI's comfy_api: without COMFYUI_DIR this module skips

spec = importlib.util.spec_from_file_location("mvic_workflow_api_convert", ROOT / "tools" / "workflow_api.py")
workflow_api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workflow_api)

FIXTURES = ROOT / "tests" / "fixtures"
ICLORA_WORKFLOW = FIXTURES / "workflow_iclora_film_storyboard_2024.json"


@pytest.fixture(scope="module")
def iclora_definitions():
    """Our nodes, and ComfyUI 0.8.0's /object_info for the core nodes of the In-Context-LoRA workflow shape."""
    ours = workflow_api.all_definitions()
    return {**ours, **json.loads((FIXTURES / "object_info_iclora.json").read_text(encoding="utf-8"))}


def _iclora() -> dict:
    return json.loads(ICLORA_WORKFLOW.read_text(encoding="utf-8"))


def test_the_in_context_lora_workflow_converts_as_the_frontend_loads_it(iclora_definitions):
    """A 2024 save: DualCLIPLoader has 3 widget values (the node has 4 now), width and height come from
    PrimitiveNodes, the noise seed carries its control value. The missing `device` takes its default."""
    notes = []
    api = workflow_api.to_api(_iclora(), iclora_definitions, notes=notes)
    assert notes == [
        "node 2 (DualCLIPLoader): no saved value for device, default 'default' used (as the frontend does)"
    ]
    assert api["2"]["inputs"] == {
        "clip_name1": "t5xxl_fp8_e4m3fn.safetensors",
        "clip_name2": "clip_l.safetensors",
        "type": "flux",
        "device": "default",
    }
    assert api["7"]["inputs"] == {
        "model": ["4", 0],
        "max_shift": 1.15,
        "base_shift": 0.5,
        "width": 1024,
        "height": 1536,
    }
    assert api["10"]["inputs"] == {"width": 1024, "height": 1536, "batch_size": 1}
    assert api["14"]["inputs"] == {"noise_seed": 219560347761423}
    assert api["13"]["inputs"] == {"model": ["7", 0], "scheduler": "simple", "steps": 20, "denoise": 1}
    assert api["4"]["inputs"] == {
        "model": ["1", 0],
        "clip": ["2", 0],
        "lora_name": "movie-shots.safetensors",
        "strength_model": 1,
        "strength_clip": 1,
    }
    assert api["15"]["inputs"] == {
        "noise": ["14", 0],
        "guider": ["11", 0],
        "sampler": ["12", 0],
        "sigmas": ["13", 0],
        "latent_image": ["10", 0],
    }
    assert sorted(api, key=int) == ["1", "2", "3", "4", "5", "6", "7", "10", "11", "12", "13", "14", "15", "16", "17"]
    with pytest.raises(workflow_api.WorkflowError, match=r"node 2 \(DualCLIPLoader\): 3 widget values, expected 4"):
        workflow_api.to_api(_iclora(), iclora_definitions, strict=True)


def _with_values(node_id: int, values) -> dict:
    workflow = _iclora()
    next(n for n in workflow["nodes"] if n["id"] == node_id)["widgets_values"] = values
    return workflow


def test_values_left_over_are_ignored_and_a_stray_control_value_is_skipped(iclora_definitions):
    notes = []
    api = workflow_api.to_api(_with_values(3, ["ae.safetensors", "from a newer node"]), iclora_definitions, notes=notes)
    assert api["3"]["inputs"] == {"vae_name": "ae.safetensors"}
    assert "node 3 (VAELoader): ignored 1 value(s) the node has no widget for (as the frontend does)" in notes
    # steps saved with a control value (a version of the node that randomised it): skipped, nothing shifts.
    notes = []
    api = workflow_api.to_api(_with_values(13, ["beta", 30, "increment", 0.8]), iclora_definitions, notes=notes)
    assert api["13"]["inputs"] == {"model": ["7", 0], "scheduler": "beta", "steps": 30, "denoise": 0.8}
    assert "node 13 (BasicScheduler): skipped the control value 'increment' after steps (none there now)" in notes
    api = workflow_api.to_api(
        _with_values(12, ["euler", "fixed"]), iclora_definitions, notes=notes
    )  # ... also at the end
    assert api["12"]["inputs"] == {"sampler_name": "euler"}


def test_widget_values_saved_by_name_and_inputs_turned_into_sockets(iclora_definitions):
    api = workflow_api.to_api(_with_values(13, {"scheduler": "karras", "steps": 8}), iclora_definitions)
    assert api["13"]["inputs"] == {"model": ["7", 0], "scheduler": "karras", "steps": 8, "denoise": 1.0}
    # The frontend's migrateWidgetsValues: a save from when `strength_clip` was still a widget holds its value;
    # now it is a forceInput socket, that value is dropped (only when the count fits that older shape).
    definitions = json.loads(json.dumps(iclora_definitions))
    definitions["LoraLoader"]["input"]["required"]["strength_model"][1]["forceInput"] = True
    api = workflow_api.to_api(_with_values(4, ["movie-shots.safetensors", 0.7, 0.9]), definitions)
    assert api["4"]["inputs"] == {
        "model": ["1", 0],
        "clip": ["2", 0],
        "lora_name": "movie-shots.safetensors",
        "strength_clip": 0.9,
    }


def test_the_tool_converts_any_workflow_file(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "workflow_api.py"),
            "--convert",
            str(ICLORA_WORKFLOW),
            "--object-info",
            str(FIXTURES / "object_info_iclora.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["2"]["inputs"]["device"] == "default"
    assert "note: node 2 (DualCLIPLoader): no saved value for device" in out.stderr
