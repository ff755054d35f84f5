"""ICLoRASampler: the plan (layout from LoRA metadata, prompts, shift, references) and a real
ComfyUI run on tiny random models (768-wide FLUX driven by CLIP-L alone: the cheap fixture)."""

import json
import subprocess

import numpy as np
import pytest
from packload import ROOT, mvic_module

plan = mvic_module("sampling.plan")
markers = mvic_module("markers")


def test_layout_and_markers_come_from_the_lora_metadata():
    meta = {
        "mvic_layout": json.dumps({"rows": 1, "cols": 3, "panel_width": 512, "panel_height": 768}),
        "mvic_markers": json.dumps({"prefix": "[MOVIE-SHOTS]", "panels": ["[SCENE-1]", "[SCENE-2]", "[SCENE-3]"]}),
        "mvic_trigger": "mvtok",
    }
    defaults = plan.LoraDefaults.from_metadata(meta)
    layout = plan.resolve_layout(0, 0, 0, 0, defaults)
    assert (layout.rows, layout.cols, layout.width, layout.height) == (1, 3, 1536, 768)
    assert plan.resolve_markers(layout, defaults).prefix == "[MOVIE-SHOTS]"
    prompt = plan.assemble_prompt(
        "two friends at a cafe",
        "close-up\nwide shot\nover the shoulder",
        plan.resolve_markers(layout, defaults),
        defaults.trigger,
    )
    assert (
        prompt == "mvtok [MOVIE-SHOTS] two friends at a cafe; [SCENE-1] close-up; [SCENE-2] wide shot; "
        "[SCENE-3] over the shoulder."
    )
    assert plan.resolve_layout(0, 0, 0, 0, plan.LoraDefaults()) == plan.DEFAULT_LAYOUT
    assert plan.resolve_layout(1, 2, 0, 0, defaults).cols == 2


def test_full_captions_are_used_as_written_and_bad_prompts_explain_the_fix():
    four = markers.markers_for(2, 2)
    caption = "[FOUR-VIEWS] a bag; [TOP-LEFT] side; [TOP-RIGHT] front; [BOTTOM-LEFT] back; [BOTTOM-RIGHT] top"
    assert plan.assemble_prompt(caption, "", four) == caption
    with pytest.raises(ValueError, match="one line per panel"):
        plan.assemble_prompt("a bag", "only one line", four)


def test_reference_plan_masks_whole_panels_and_blends_only_the_generated_side():
    layout = mvic_module("layout").CompositeLayout(2, 2, 32, 32)
    ref = np.full((50, 40, 3), 200, np.uint8)
    sharp = plan.plan_references([ref], [0], layout)
    assert sharp.generate_mask[:32, :32].max() == 0 and sharp.generate_mask[32:, :].min() == 1
    assert (sharp.composite[:32, :32] == 200).all() and (sharp.composite[40, 40] == 127).all()
    soft = plan.plan_references([ref], [0], layout, seam_blend=8)
    assert soft.generate_mask[:32, :32].max() == 0  # the reference stays exact
    assert 0 < soft.generate_mask[10, 33] < 1 and soft.generate_mask[10, 60] == 1
    with pytest.raises(ValueError, match="panel numbers 1..4"):
        plan.parse_panel_list("0,5", 4)
    with pytest.raises(ValueError, match="one image per listed panel"):
        plan.plan_references([ref, ref], [0], layout)


def _lora_with_metadata(path, layout):
    import tiny_models

    markers = {"prefix": "[TWO-VIEWS]", "panels": ["[LEFT]", "[RIGHT]"]}
    return tiny_models.stand_in_lora(path, {"mvic_layout": json.dumps(layout), "mvic_markers": json.dumps(markers)})


def test_sampler_in_real_comfyui_text_and_image_modes(tmp_path):
    from comfy_harness import comfyui_paths

    paths = comfyui_paths()
    if paths is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON)")
    import tiny_models

    comfy_dir, python = paths
    lora = _lora_with_metadata(
        tmp_path / "meta_lora.safetensors", {"rows": 1, "cols": 2, "panel_width": 32, "panel_height": 32}
    )
    out = subprocess.run(
        [
            python,
            str(ROOT / "tests" / "sampler_check_comfyui.py"),
            str(comfy_dir),
            str(ROOT),
            str(tiny_models.tiny_flux(txt_width=768, vec_width=768)),
            str(tiny_models.tiny_clip_l()),
            str(tiny_models.tiny_ae()),
            str(lora),
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    result = json.loads((tmp_path / "out.json").read_text())
    # Acceptance 3: default inputs + our LoRA's metadata -> the trained layout.
    assert result["text"]["composite"] == [1, 32, 64, 3] and result["text"]["views"] == [2, 32, 32, 3]
    assert (
        result["text"]["prompt"].startswith("[TWO-VIEWS] a red mug; [LEFT] front; [RIGHT] back")
        and result["text"]["exact_split"]
    )
    # Re-queued with new seeds: no LoRA re-read, no weight re-patch (the cost the core graph avoids by caching).
    assert result["rerun"] == {"lora_file_reads": 0, "weights_patched": 0, "seeds_differ": True}
    # Acceptance 2: reference latents bit-identical, pixels unchanged, a different reference changes the rest, k views.
    assert result["image"]["ref_cells_equal"] == [True, True]
    assert result["image"]["ref_pixels_equal"] == [True, True]
    assert result["image"]["generated_differ"] is True
    assert result["image"]["views"] == [4, 4]
