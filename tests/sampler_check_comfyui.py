"""Run by ComfyUI's Python: drive MVIC_ICLoRASampler in-process on tiny random models.
Usage: python sampler_check_comfyui.py COMFYUI_DIR PACK_DIR FLUX768 CLIP_L AE LORA OUT_JSON"""

import json
import sys

comfy_dir, pack_dir, flux_path, clip_path, ae_path, lora_path, out_json = sys.argv[1:8]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, comfy_dir)
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import importlib  # noqa: E402
import importlib.util  # noqa: E402

import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402
import torch  # noqa: E402
import utils.extra_config  # noqa: E402,F401  (as main.py does before importing nodes)
import folder_paths  # noqa: E402
import os  # noqa: E402

# The LoRA's folder is one of this ComfyUI's loras folders, as an extra_model_paths.yaml entry makes it:
# lora_path may only name files there.
folder_paths.add_model_folder_path("loras", os.path.dirname(lora_path))

spec = importlib.util.spec_from_file_location(
    "ComfyUI-MultiView-ICLoRA", f"{pack_dir}/__init__.py", submodule_search_locations=[pack_dir]
)
pack = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pack
spec.loader.exec_module(pack)
Sampler = importlib.import_module(spec.name + ".nodes").nodes_by_id()["MVIC_ICLoRASampler"]  # as comfy_entrypoint does

model = comfy.sd.load_diffusion_model(flux_path)
clip = comfy.sd.load_clip(
    ckpt_paths=[clip_path], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION
)  # CLIP-L alone: 768-wide
vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(ae_path))
result = {}

# 1. Text -> views with the LoRA's metadata deciding the layout (1x2 of 32 px here).
composite, views, prompt, latent = Sampler.execute(
    model, clip, vae, "a red mug", 1, 2, 3.5, "euler", "simple", panel_prompts="front\nback", lora_path=lora_path
)[:4]
result["text"] = {
    "composite": list(composite.shape),
    "views": list(views.shape),
    "prompt": prompt,
    "exact_split": bool(torch.equal(torch.cat([views[0], views[1]], dim=1), composite[0])),
}

# 1b. New seeds, same inputs (what ComfyUI does on every queue): the LoRA'd model is reused, so
# the LoRA file is not read again and no FLUX weight is re-patched (the core-node graph's
# cached LoraLoader gets the same). Spies call through to ComfyUI's own functions.
import comfy.lora  # noqa: E402

calls = {"lora_file_reads": 0, "weights_patched": 0}
load_torch_file, calculate_weight = comfy.utils.load_torch_file, comfy.lora.calculate_weight


def counting_load(*args, **kwargs):
    calls["lora_file_reads"] += 1
    return load_torch_file(*args, **kwargs)


def counting_patch(*args, **kwargs):
    calls["weights_patched"] += 1
    return calculate_weight(*args, **kwargs)


comfy.utils.load_torch_file, comfy.lora.calculate_weight = counting_load, counting_patch
reruns = [
    Sampler.execute(
        model, clip, vae, "a red mug", seed, 2, 3.5, "euler", "simple", panel_prompts="front\nback", lora_path=lora_path
    )[0]
    for seed in (2, 3)
]
comfy.utils.load_torch_file, comfy.lora.calculate_weight = load_torch_file, calculate_weight
result["rerun"] = {**calls, "seeds_differ": bool(not torch.equal(reruns[0], reruns[1]))}


# 2. Image -> other views: reference in panel 1 of a 2x2 of 32 px; same seed, two references.
def reference(value):
    ref = torch.zeros(1, 48, 40, 3)
    ref[..., 0] = value
    ref[:, ::4, :, 1] = 1.0
    return ref


caption = "[FOUR-VIEWS] a mug; [TOP-LEFT] front; [TOP-RIGHT] left; [BOTTOM-LEFT] back; [BOTTOM-RIGHT] right"
runs = []
for value in (0.9, 0.1):
    ref = reference(value)
    c, v, p, lat = Sampler.execute(
        model,
        clip,
        vae,
        caption,
        7,
        2,
        3.5,
        "euler",
        "simple",
        rows=2,
        cols=2,
        panel_width=32,
        panel_height=32,
        reference_images=ref,
        reference_panels="1",
    )[:4]
    from importlib import import_module

    plan = import_module("ComfyUI-MultiView-ICLoRA.mvic.sampling.plan")
    tensor_to_images = import_module("ComfyUI-MultiView-ICLoRA.nodes.comfy_io").tensor_to_images
    layout = plan.resolve_layout(2, 2, 32, 32, plan.LoraDefaults())
    refplan = plan.plan_references(tensor_to_images(ref), [0], layout)
    encoded = vae.encode(torch.from_numpy(refplan.composite[None].astype("float32") / 255.0))
    samples = lat["samples"]
    runs.append(
        {
            "ref_cells_equal": bool(torch.equal(samples[:, :, :4, :4], encoded[:, :, :4, :4].to(samples.dtype))),
            "generated": samples[:, :, :, 4:].clone(),
            "views": int(v.shape[0]),
            "ref_pixels_equal": bool(
                torch.equal(c[0, :32, :32], torch.from_numpy(refplan.composite[:32, :32].astype("float32") / 255.0))
            ),
        }
    )
result["image"] = {
    "ref_cells_equal": [r["ref_cells_equal"] for r in runs],
    "ref_pixels_equal": [r["ref_pixels_equal"] for r in runs],
    "views": [r["views"] for r in runs],
    "generated_differ": bool(not torch.equal(runs[0]["generated"], runs[1]["generated"])),
}
json.dump(result, open(out_json, "w"))
print("RESULT " + json.dumps(result))
