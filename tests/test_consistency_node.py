"""MVIC_ConsistencyScore: plain calls, and a real ComfyUI over /prompt (composites and views, a bad grid)."""

import json
import os
import subprocess
import sys
import textwrap

import consistency_scenes as scenes
import numpy as np
import pytest
import torch
from packload import PACK_NAME, ROOT, mvic_module, node_class
from PIL import Image

layout = mvic_module("layout")


@pytest.fixture(scope="module")
def composites():
    sets = [scenes.true_set(seed)[0] for seed in range(4)]
    grid = layout.CompositeLayout(2, 2, 384, 384)
    return {
        "true": layout.compose(sets[0], grid),
        "mixed": layout.compose(scenes.mixed_set(sets, 0), grid),
        "repeated": layout.compose(scenes.repeat_view(sets[1][2], 4, seed=3), grid),
    }


def _tensor(*arrays):
    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)


def test_node_scores_a_batch_of_composites(composites):
    batch = _tensor(composites["true"], composites["mixed"])
    out = node_class("MVIC_ConsistencyScore").execute(batch, "composite", 2, 2)
    text, annotated, first = out.result
    scores = json.loads(text)
    assert [s["index"] for s in scores] == [0, 1] and scores[0]["consistency"] > 0.5 > scores[1]["consistency"]
    assert first == pytest.approx(scores[0]["consistency"], abs=1e-4)  # JSON rounds to 4 places
    assert annotated.shape[0] == 2 and annotated.shape[2] == 768 and annotated.shape[1] > 768  # a banner on top
    assert out.ui["text"][0].startswith("1: consistency") and out.ui["images"] == []  # no ComfyUI: no previews


def test_node_scores_views_as_one_set(composites):
    views = layout.split(composites["repeated"], 2, 2)
    text, annotated, value = node_class("MVIC_ConsistencyScore").execute(_tensor(*views), "views", 1, 1).result
    (score,) = json.loads(text)
    assert score["duplicate_pairs"] == 6 and value == 0.0 and "duplicate_views" in score["flags"]
    assert annotated.shape[0] == 1


def test_pack_import_leaves_opencv_unloaded():
    if not os.environ.get("COMFYUI_DIR"):
        pytest.skip("needs ComfyUI's comfy_api: set COMFYUI_DIR to a ComfyUI checkout")
    code = textwrap.dedent(f"""
        import importlib.util, sys
        sys.path.append({os.environ["COMFYUI_DIR"]!r})  # the nodes' comfy_api
        spec = importlib.util.spec_from_file_location({PACK_NAME!r}, {str(ROOT / "__init__.py")!r},
                                                      submodule_search_locations=[{str(ROOT)!r}])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        import asyncio  # registered as ComfyUI registers them
        nodes = asyncio.run(asyncio.run(module.comfy_entrypoint()).get_node_list())
        assert "MVIC_ConsistencyScore" in [n.GET_SCHEMA().node_id for n in nodes]
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("cv2", "transformers")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_node_in_real_comfyui(comfyui, composites):
    for name, array in composites.items():
        Image.fromarray(array).save(comfyui.base_dir / "input" / f"mvic_consistency_{name}.png")

    def score(image, input_is="composite", rows=2, cols=2):
        return {
            "class_type": "MVIC_ConsistencyScore",
            "inputs": {"image": image, "input_is": input_is, "rows": rows, "cols": cols},
        }

    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "mvic_consistency_true.png"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "mvic_consistency_mixed.png"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "mvic_consistency_repeated.png"}},
        "4": score(["1", 0]),
        "5": score(["2", 0]),
        "6": {"class_type": "MVIC_SplitComposite", "inputs": {"image": ["3", 0], "rows": 2, "cols": 2}},
        "7": score(["6", 0], "views", 1, 1),
    }
    outputs = comfyui.run_prompt(prompt, timeout=300)["outputs"]
    true, mixed, repeated = (json.loads(outputs[node]["scores"][0])[0] for node in ("4", "5", "7"))
    assert true["consistency"] > 0.5 > mixed["consistency"] and repeated["duplicate_pairs"] == 6
    assert outputs["4"]["text"][0].startswith("1: consistency")
    for node in ("4", "5", "7"):
        (shown,) = outputs[node]["images"]
        assert shown["type"] == "temp" and (comfyui.base_dir / "temp" / shown["filename"]).is_file()
    # A workflow with the wrong grid: ComfyUI reports our message, naming the fix.
    bad = {"1": prompt["1"], "2": score(["1", 0], cols=5)}
    with pytest.raises(AssertionError, match="does not split into 2 rows x 5 cols"):
        comfyui.run_prompt(bad, timeout=120)
