"""The headless diffusers engine (`python -m mvic sample`) on tiny random models: the tiny
FLUX sd-scripts trains (4096-wide text), full-size random CLIP-L and AE, an all-zero T5-XXL
(loaded in bf16: ~9.5 GB of RAM for a few seconds). Offline: configs and tokenizers are local."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from packload import ROOT, mvic_module

pytest.importorskip("diffusers")
pytest.importorskip("peft")
tiny_models = pytest.importorskip("tiny_models")
engine = mvic_module("sampling.diffusers_engine")


@pytest.fixture(scope="module")
def files():
    return mvic_module("flux_files").FluxModelFiles(
        tiny_models.tiny_flux(), tiny_models.tiny_clip_l(), tiny_models.zero_t5xxl(), tiny_models.tiny_ae()
    )


def test_image_to_other_views_keeps_the_reference_and_returns_k_views(files):
    reference = np.zeros((40, 48, 3), np.uint8)
    reference[..., 0] = 220
    reference[::4, :, 1] = 90
    caption = "[FOUR-VIEWS] a mug; [TOP-LEFT] front; [TOP-RIGHT] left; [BOTTOM-LEFT] back; [BOTTOM-RIGHT] right"
    result = engine.sample(
        files,
        caption,
        rows=2,
        cols=2,
        panel_width=32,
        panel_height=32,
        steps=2,
        references=[reference],
        max_sequence_length=64,
    )
    assert result.composite.shape == (64, 64, 3) and len(result.views) == 4
    fitted = engine.plan.plan_references(
        [reference], [0], engine.plan.resolve_layout(2, 2, 32, 32, engine.plan.LoraDefaults())
    ).composite
    assert np.array_equal(result.views[0], fitted[:32, :32])
    assert result.prompt == caption


def test_cli_sample_uses_the_lora_metadata_and_loads_it_through_peft(files, tmp_path):
    layout = {"rows": 1, "cols": 2, "panel_width": 32, "panel_height": 32}
    markers = {"prefix": "[TWO-VIEWS]", "panels": ["[LEFT]", "[RIGHT]"]}
    lora = tiny_models.stand_in_lora(
        tmp_path / "lora.safetensors",
        {"mvic_layout": json.dumps(layout), "mvic_markers": json.dumps(markers), "mvic_trigger": "mvtok"},
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mvic",
            "sample",
            "--flux",
            str(files.flux),
            "--clip-l",
            str(files.clip_l),
            "--t5xxl",
            str(files.t5xxl),
            "--ae",
            str(files.ae),
            "--prompt",
            "a red mug",
            "--panel-prompts",
            "front\\nback",
            "--lora",
            str(lora),
            "--steps",
            "2",
            "--t5-tokens",
            "64",
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    from PIL import Image

    assert Image.open(tmp_path / "out" / "composite.png").size == (64, 32)
    assert sorted(p.name for p in (tmp_path / "out").glob("view_*.png")) == ["view_1.png", "view_2.png"]
    assert (
        tmp_path / "out" / "prompt.txt"
    ).read_text().strip() == "mvtok [TWO-VIEWS] a red mug; [LEFT] front; [RIGHT] back."
    assert "the LoRA is applied to 1 module(s)" in out.stdout  # the stand-in has one: double_blocks.0 img_attn.proj
