"""Acceptance 1: the pack imports the way ComfyUI imports it, light and self-contained; its nodes are
ComfyUI V3 nodes (comfy_api.latest) registered through comfy_entrypoint, following ComfyUI's conventions."""

import os
import subprocess

import pytest
import sys
import textwrap

from packload import PACK_NAME, ROOT, nodes_by_id, pack

# Node ID (unchanged: saved workflows name it) -> the display name people read.
EXPECTED = {
    "MVIC_MultiViewLoader": "Multi-View Loader",
    "MVIC_CompositeGrid": "Composite Grid",
    "MVIC_GeminiCaptioner": "Multi-View Captioner",
    "MVIC_SaveICLoRADataset": "Save IC-LoRA Dataset",
    "MVIC_LoRATrainer": "IC-LoRA Trainer (sd-scripts)",
    "MVIC_FluxLoaderAfterTraining": "FLUX Loader (after training)",
    "MVIC_ICLoRASampler": "IC-LoRA Sampler",
    "MVIC_SplitComposite": "Split Composite",
    "MVIC_ConsistencyScore": "Multi-View Consistency Score",
}
STAGES = {"dataset", "train", "sample"}
# Seeds and whether the frontend's control after each run is explicit: the sampler's should randomize
# (new views per queue); the trainer's keeps its control widget, so saved workflows keep their widget
# positions, and the shipped workflows set it to 'fixed'.
SEEDS = {("MVIC_ICLoRASampler", "seed"): True, ("MVIC_LoRATrainer", "seed"): True}

LOAD = f"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location({PACK_NAME!r}, {str(ROOT / "__init__.py")!r},
                                              submodule_search_locations=[{str(ROOT)!r}])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
"""

# As ComfyUI does it (nodes.load_custom_node): exec the module, then await comfy_entrypoint().get_node_list().
IMPORT_AS_COMFYUI = LOAD + textwrap.dedent(
    """
    sys.path.append(sys.argv[1])
    import asyncio
    spec.loader.exec_module(module)
    nodes = asyncio.run(asyncio.run(module.comfy_entrypoint()).get_node_list())
    heavy = ("cv2", "transformers", "diffusers", "peft", "google", "openai", "accelerate")
    print(json.dumps({
        "classic_mappings": hasattr(module, "NODE_CLASS_MAPPINGS"),
        "nodes": {n.GET_SCHEMA().node_id: n.GET_SCHEMA().display_name for n in nodes},
        "heavy": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
        "top_level_mvic": "mvic" in sys.modules,
    }))
    """
)


def test_pack_registers_its_v3_nodes_through_comfy_entrypoint_and_stays_light():
    if not os.environ.get("COMFYUI_DIR"):
        pytest.skip("needs ComfyUI's comfy_api: set COMFYUI_DIR to a ComfyUI checkout")
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_AS_COMFYUI, os.environ["COMFYUI_DIR"]],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["classic_mappings"] is False  # else ComfyUI takes the classic path and ignores comfy_entrypoint
    assert result["nodes"] == EXPECTED
    assert result["heavy"] == [] and result["top_level_mvic"] is False


def test_without_comfyui_the_pack_says_what_it_is():
    """The pack (and its core) loads without ComfyUI; registering its nodes says what it needs."""
    code = textwrap.dedent(
        LOAD + "spec.loader.exec_module(module)\nimport asyncio\nasyncio.run(module.comfy_entrypoint())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert out.returncode == 1 and "ComfyUI custom node pack" in out.stderr and "python -m mvic" in out.stderr


def test_every_node_follows_comfyui_conventions():
    """Issue 14 point 3 (declared side; tests/test_comfyui_integration.py checks what /object_info serves)."""
    nodes = nodes_by_id()
    assert set(nodes) == set(EXPECTED)
    for key, cls in nodes.items():
        schema = cls.GET_SCHEMA()
        assert schema.display_name == EXPECTED[key]
        assert schema.category.split("/")[0] == "MultiView ICLoRA" and schema.category.split("/")[1] in STAGES, key
        assert schema.description, key
        missing = [i.id for i in schema.inputs if not i.tooltip]
        assert missing == [], f"{key}: inputs without a tooltip: {missing}"
        for i in schema.inputs:
            if i.get_io_type() == "INT" and i.id in ("seed", "noise_seed"):
                assert SEEDS[(key, i.id)] == i.control_after_generate, (key, i.id)


def test_one_copy_of_the_core_in_the_test_process():
    assert "mvic" not in sys.modules  # tests use <pack>.mvic only, like ComfyUI
    init = str(ROOT / "__init__.py")
    copies = [name for name, module in list(sys.modules.items()) if getattr(module, "__file__", None) == init]
    assert copies == [PACK_NAME]  # pytest did not import the pack root a second time
    loader_module = sys.modules[nodes_by_id()["MVIC_MultiViewLoader"].__module__]
    assert loader_module.__name__.startswith(PACK_NAME + ".nodes")
    assert pack.nodes.NODES  # the pack is loaded (the nodes were imported above)


def test_cli_imports_core_alone():
    code = (
        "import sys, mvic.cli; bad=[m for m in sys.modules if m=='nodes' or m.startswith('nodes.') or m=='torch']; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_requirements_never_install_torch():
    names = [line.split("#")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert not [n for n in names if n.startswith(("torch", "torchvision", "torchaudio"))]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "[tool.comfy]" in pyproject and "torch" not in pyproject.split("dependencies", 1)[1].split("\n", 1)[0]


def test_node_functions_stay_short():
    """Issue 15 point 7 for nodes/: no function over 60 lines, no line over 120 characters."""
    import ast

    long_functions, long_lines = [], []
    for path in sorted((ROOT / "nodes").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
        long_lines += [f"{path.name}:{n}" for n, line in enumerate(text.splitlines(), 1) if len(line) > 120]
    assert long_functions == [] and long_lines == []
