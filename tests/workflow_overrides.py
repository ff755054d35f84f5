"""Everything tests/test_workflows_comfyui.py changes about the shipped workflows, in one place.

The shipped API files (workflows/api/*.json) are run as they are, except for these inputs:

* composite size: 2x2 of 64-px panels instead of 512 (CompositeGrid; the sampler reads the layout
  from the trained LoRA, as shipped);
* sampling steps: 2;
* T5 tokens: at least 32 instead of ComfyUI's 256 for FLUX (a T5-XXL pass over 256 tokens takes ~45 s on
  this CPU). ComfyUI's own T5TokenizerOptions node (min_length 32) is put in front of each ICLoRASampler's
  `clip` input: one node added, every shipped node and link still runs;
* training steps: 2, plus what the tiny run needs on this 2-core CPU box: vram_preset "cpu"
  (bf16, the T5-XXL memory-mapped from the page cache) and 32 T5 tokens instead of 512 (~10x faster
  text-encoder caching). sd_scripts_dir stays '(default)': the checkout `python -m mvic setup-trainer`
  registered in the local settings, as a user's setup would.

Model file names are not changed: the tiny random models (tests/tiny_models.py) are linked into the
test's model folders under the names the workflows ship with (MODEL_FILES).

Conditioning: sd-scripts fixes FLUX's text width at 4096 (T5-XXL) and its pooled width at 768, so
the FLUX it trains must be sampled with 4096-wide conditioning. The workflows load the text
encoders with DualCLIPLoader (type flux), so the cheapest honest way is the real thing with an
all-zero T5-XXL (9.5 GB in fp16) stored in fp8 by ComfyUI's --fp8_e4m3fn-text-enc flag (half the
RAM); no conditioning built in code, no node swapped. The same tiny FLUX file is trained by
sd-scripts and sampled by ComfyUI.
"""

from __future__ import annotations

import copy

COMPOSITE = {"rows": 2, "cols": 2, "panel_width": 64, "panel_height": 64}
SAMPLER_STEPS = 2
TRAINING_STEPS = 2
T5_TOKENS = 32  # sd-scripts' --t5xxl_max_token_length and ComfyUI's T5 min_length: the tiny runs' prompts are short

INPUT_OVERRIDES: dict[str, dict[str, object]] = {
    "MVIC_CompositeGrid": dict(COMPOSITE),
    "MVIC_ICLoRASampler": {"steps": SAMPLER_STEPS},
    "MVIC_LoRATrainer": {
        "steps": TRAINING_STEPS,
        "vram_preset": "cpu",
        "extra_args": f"--t5xxl_max_token_length {T5_TOKENS}",
    },
}

# ComfyUI model folder / file name in the workflows -> the tiny_models generator whose file is linked there.
MODEL_FILES = {
    # 4096-wide txt_in, 768-wide vector_in: what sd-scripts trains
    "diffusion_models/flux1-dev.safetensors": "tiny_flux",
    "text_encoders/clip_l.safetensors": "tiny_clip_l",
    "text_encoders/t5xxl_fp16.safetensors": "zero_t5xxl",
    "vae/ae.safetensors": "tiny_ae",
}

COMFYUI_FLAGS = ["--fp8_e4m3fn-text-enc"]

SHORTER_T5 = {"class_type": "T5TokenizerOptions", "inputs": {"min_padding": 0, "min_length": T5_TOKENS}}


def apply(prompt: dict) -> tuple[dict, list[str]]:
    """A copy of an API prompt with the overrides applied, and what was changed (for the test log).
    An override naming an input the node doesn't have, or one fed by a link, is an error."""
    prompt = copy.deepcopy(prompt)
    changes = []
    for node_id, entry in prompt.items():
        for name, value in INPUT_OVERRIDES.get(entry["class_type"], {}).items():
            if name not in entry["inputs"]:
                raise KeyError(f"override {entry['class_type']}.{name}: node {node_id} has no such input")
            if isinstance(entry["inputs"][name], list):
                raise ValueError(f"override {entry['class_type']}.{name}: node {node_id} gets it from a link")
            if entry["inputs"][name] != value:
                changes.append(f"{node_id} {entry['class_type']}.{name}: {entry['inputs'][name]!r} -> {value!r}")
                entry["inputs"][name] = value
    return prompt, changes + _shorter_t5(prompt)


def _shorter_t5(prompt: dict) -> list[str]:
    """SHORTER_T5 between each ICLoRASampler and the CLIP it is linked to (one per CLIP output), in place."""
    added: dict[tuple, str] = {}  # (source node, output) -> the T5TokenizerOptions node fed by it
    next_id = 1 + max((int(node_id) for node_id in prompt if node_id.isdigit()), default=0)
    for entry in list(prompt.values()):
        link = entry["inputs"].get("clip") if entry["class_type"] == "MVIC_ICLoRASampler" else None
        if not isinstance(link, list):
            continue
        if tuple(link) not in added:
            new_id = added[tuple(link)] = str(next_id + len(added))
            prompt[new_id] = {**SHORTER_T5, "inputs": {**SHORTER_T5["inputs"], "clip": list(link)}}
        entry["inputs"]["clip"] = [added[tuple(link)], 0]
    return [f"{new} T5TokenizerOptions (min_length {T5_TOKENS}) fed by node {src}" for (src, _), new in added.items()]
