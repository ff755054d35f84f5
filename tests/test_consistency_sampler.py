"""ICLoRASampler's `candidates`: N seeds sampled, returned best first by consistency score. Real ComfyUI over
/prompt on tiny random models (768-wide FLUX driven by CLIP-L alone, as in test_sampler.py); random weights
give low scores, the test checks the plumbing and that the order and numbers are the metric's."""

import json
from importlib import import_module

import consistency_scenes as scenes
import numpy as np
import pytest
import torch
from comfy_harness import ComfyServer, comfyui_paths
from packload import PACK_NAME, mvic_module
from PIL import Image

consistency = mvic_module("consistency")
PANEL = 64


@pytest.fixture(scope="module")
def sampling_server(tmp_path_factory):
    paths = comfyui_paths()
    if paths is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON)")
    import tiny_models

    models = tmp_path_factory.mktemp("candidate_models")
    files = {
        "diffusion_models/tiny_flux768.safetensors": tiny_models.tiny_flux(txt_width=768, vec_width=768),
        "text_encoders/clip_l.safetensors": tiny_models.tiny_clip_l(),
        "vae/ae.safetensors": tiny_models.tiny_ae(),
    }
    for relative, source in files.items():
        (models / relative).parent.mkdir(parents=True, exist_ok=True)
        (models / relative).symlink_to(source)
    folders = {name: models / name for name in ("diffusion_models", "text_encoders", "vae")}
    server = ComfyServer(*paths, base_dir=tmp_path_factory.mktemp("candidates_base"), model_dirs=folders).start()
    yield server
    server.stop()


def _prompt(candidates: int) -> dict:
    sampler = {
        "model": ["1", 0],
        "clip": ["2", 0],
        "vae": ["3", 0],
        "prompt": "a red mug",
        "seed": 5,
        "steps": 2,
        "guidance": 3.5,
        "sampler_name": "euler",
        "scheduler": "simple",
        "panel_prompts": "front\nleft\nback\nright",
        "rows": 2,
        "cols": 2,
        "panel_width": PANEL,
        "panel_height": PANEL,
        "candidates": candidates,
    }
    score = {"image": ["4", 0], "input_is": "composite", "rows": 2, "cols": 2}
    prefix = f"candidates{candidates}"
    return {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "tiny_flux768.safetensors", "weight_dtype": "default"},
        },
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "clip_l.safetensors", "type": "stable_diffusion"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "MVIC_ICLoRASampler", "inputs": sampler},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": f"{prefix}/composite"}},
        "6": {"class_type": "PreviewAny", "inputs": {"source": ["4", 4]}},
        "7": {"class_type": "MVIC_ConsistencyScore", "inputs": score},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["4", 1], "filename_prefix": f"{prefix}/view"}},
    }


def test_candidates_are_sampled_and_ranked_by_score(sampling_server):
    outputs = sampling_server.run_prompt(_prompt(3), timeout=600)["outputs"]
    ranking = json.loads(outputs["6"]["text"][0])
    assert [r["rank"] for r in ranking] == [1, 2, 3] and sorted(r["seed"] for r in ranking) == [5, 6, 7]
    values = [r["consistency"] for r in ranking]
    print(f"\n[candidates on tiny random FLUX: {ranking}]")
    assert values == sorted(values, reverse=True)
    saved = [sampling_server.base_dir / "output" / i["subfolder"] / i["filename"] for i in outputs["5"]["images"]]
    composites = [np.asarray(Image.open(path).convert("RGB")) for path in saved]
    assert len(composites) == 3 and all(c.shape == (2 * PANEL, 2 * PANEL, 3) for c in composites)
    assert len(outputs["8"]["images"]) == 12  # the views of every candidate, in the same order
    # The order and the numbers are the metric's: the node scoring the batch, and this process scoring
    # the saved files (8-bit PNG: equal up to the last rounded digit), agree with the ranking.
    scored = json.loads(outputs["7"]["scores"][0])
    assert [s["consistency"] for s in scored] == pytest.approx(values, abs=1e-4)
    assert [consistency.score_composite(c, 2, 2).consistency for c in composites] == pytest.approx(values, abs=0.05)


def test_one_candidate_is_the_plain_sampler(sampling_server):
    outputs = sampling_server.run_prompt(_prompt(1), timeout=600)["outputs"]
    assert json.loads(outputs["6"]["text"][0]) == [{"rank": 1, "seed": 5}]
    assert len(outputs["5"]["images"]) == 1 and len(outputs["8"]["images"]) == 4


def test_ranking_reorders_composites_and_latents_together():
    """The same step the node takes after sampling, on composites whose scores differ (validation scenes)."""
    from packload import nodes_by_id

    nodes_by_id()  # the nodes need ComfyUI's comfy_api: skips without COMFYUI_DIR
    comfy_sampling = import_module(f"{PACK_NAME}.nodes.comfy_sampling")
    layout = mvic_module("layout")
    grid = layout.CompositeLayout(2, 2, 384, 384)
    sets = [scenes.true_set(seed)[0] for seed in range(4)]
    arrays = [
        layout.compose(scenes.mixed_set(sets, 0), grid),
        layout.compose(sets[0], grid),
        layout.compose(scenes.repeat_view(sets[1][0], 4, seed=2), grid),
    ]
    samples = [
        (torch.from_numpy(a[None].astype(np.float32) / 255), {"samples": torch.full((1, 16, 96, 96), float(i))})
        for i, a in enumerate(arrays)
    ]
    composite, latent, text = comfy_sampling.ranked(samples, [10, 11, 12], grid)
    ranking = json.loads(text)
    assert [r["seed"] for r in ranking] == [11, 10, 12]  # the true set first; equal zeros keep the sampled order
    assert ranking[0]["consistency"] > 0.5 and ranking[2]["duplicate_pairs"] == 6
    assert torch.equal(composite[0], samples[1][0][0]) and latent["samples"][:, 0, 0, 0].tolist() == [1.0, 0.0, 2.0]
