"""The ComfyUI calls behind ICLoRASampler (imported only inside ComfyUI, when sampling)."""
from __future__ import annotations

import os

import torch


def _remember(owner, slot: str, key, make):
    """make(), kept on `owner` (one entry per slot) and returned again while `key` holds.

    ComfyUI re-runs this node for every new seed. In the same graph built from core nodes
    LoraLoader, CLIPTextEncode and ModelSamplingFlux stay cached, so the sampler gets the
    very same patched MODEL again; a fresh LoRA clone instead carries a new patch id and
    makes ComfyUI unpatch and re-patch every FLUX weight (seconds per run). Keeping the
    result on the input object means it is dropped together with that object."""
    cached = getattr(owner, slot, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    value = make()
    setattr(owner, slot, (key, value))
    return value


def apply_lora(model, path: str, strength: float):
    import comfy.sd
    import comfy.utils

    def make():
        lora = comfy.utils.load_torch_file(path, safe_load=True)
        return comfy.sd.load_lora_for_models(model, None, lora, strength, 0)[0]

    stat = os.stat(path)  # a re-trained LoRA at the same path is a new key
    return _remember(model, "_mvic_lora", (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, strength), make)


def load_flux(unet_name, weight_dtype, clip_name1, clip_name2, vae_name):
    import nodes

    (model,) = nodes.UNETLoader().load_unet(unet_name, weight_dtype)
    (clip,) = nodes.DualCLIPLoader().load_clip(clip_name1, clip_name2, "flux")
    (vae,) = nodes.VAELoader().load_vae(vae_name)
    return model, clip, vae


def _encode(clip, text: str, guidance: float):
    return _remember(clip, "_mvic_encoding", (text, guidance), lambda: _encode_now(clip, text, guidance))


def _encode_now(clip, text: str, guidance: float):
    import node_helpers

    positive = clip.encode_from_tokens_scheduled(clip.tokenize(text))
    positive = node_helpers.conditioning_set_values(positive, {"guidance": guidance})
    # FLUX-dev is guidance-distilled and sampled at cfg 1: the negative is never used,
    # so a zeroed copy (as ConditioningZeroOut makes) saves a second text encode.
    negative = []
    for cond, extras in positive:
        extras = dict(extras)
        if extras.get("pooled_output") is not None:
            extras["pooled_output"] = torch.zeros_like(extras["pooled_output"])
        negative.append([torch.zeros_like(cond), extras])
    return positive, negative


def sample_composite(model, clip, vae, text, layout, seed, steps, guidance, sampler_name, scheduler, denoise, max_shift, base_shift, references):
    import comfy.model_management
    import nodes
    from comfy_extras.nodes_model_advanced import ModelSamplingFlux

    from .comfy_io import images_to_tensor

    width, height = layout.width, layout.height
    model = _remember(model, "_mvic_shift", (max_shift, base_shift, width, height),
                      lambda: ModelSamplingFlux().patch(model, max_shift, base_shift, width, height)[0])
    positive, negative = _encode(clip, text, guidance)
    if references is None:
        latent = {"samples": torch.zeros([1, 16, height // 8, width // 8], device=comfy.model_management.intermediate_device())}
        if denoise < 1.0:
            raise ValueError("ICLoRASampler: denoise < 1 needs reference_images to start from")
    else:
        pixels = images_to_tensor([references.composite])
        mask = torch.from_numpy(references.generate_mask)[None, None]
        latent = {"samples": vae.encode(pixels[:, :, :, :3]), "noise_mask": mask}
    (out,) = nodes.common_ksampler(model, seed, steps, 1.0, sampler_name, scheduler, positive, negative, latent, denoise=denoise)
    samples = out["samples"]
    if references is not None and denoise >= 1.0:
        # The sampler keeps masked-out latents up to the latent format's scale/shift round
        # trip; put the reference cells back exactly (panels are 16-px aligned, so every
        # 8-px latent cell is wholly reference or wholly generated).
        keep_cells = torch.nn.functional.max_pool2d(torch.from_numpy(references.generate_mask)[None, None], 8) == 0
        samples = torch.where(keep_cells.to(samples.device), latent["samples"].to(samples.dtype), samples)
    composite = vae.decode(samples)
    if composite.ndim == 5:  # some VAEs return (B, T, H, W, C)
        composite = composite.reshape(-1, *composite.shape[-3:])
    composite = composite[:, :height, :width, :3].float().cpu()
    if references is not None:  # reference panels come back as given, not through the VAE
        keep = torch.from_numpy(1.0 - references.generate_mask)[None, :, :, None]
        original = images_to_tensor([references.composite])
        composite = composite * (1.0 - keep) + original * keep
    return composite, {"samples": samples}


def ranked(samples, seeds, layout):
    """(composite, latent) per seed -> one batch of each, best consistency first, and the ranking as JSON.
    A single sample is returned as it is, unscored."""
    import json

    if len(samples) == 1:
        return samples[0][0], samples[0][1], json.dumps([{"rank": 1, "seed": seeds[0]}])
    from ..mvic.consistency.ranking import rank_candidates, ranking_json
    from .comfy_io import tensor_to_images

    images = [tensor_to_images(composite)[0] for composite, _ in samples]
    order = rank_candidates(images, seeds, layout.rows, layout.cols)
    composite = torch.cat([samples[c.index][0] for c in order], dim=0)
    latent = {"samples": torch.cat([samples[c.index][1]["samples"] for c in order], dim=0)}
    return composite, latent, ranking_json(order)


def split_views(composite: torch.Tensor, layout):
    from ..mvic.layout import split_boxes

    boxes = split_boxes(composite.shape[1], composite.shape[2], layout.rows, layout.cols)
    return torch.cat([composite[b : b + 1, t:bottom, l:r] for b in range(composite.shape[0]) for t, bottom, l, r in boxes], dim=0)
