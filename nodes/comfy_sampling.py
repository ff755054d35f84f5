"""The ComfyUI calls behind ICLoRASampler and the FLUX loader (imported only inside ComfyUI,
when sampling): ComfyUI's own `comfy.*` functions, the ones its core nodes (UNETLoader,
DualCLIPLoader, VAELoader, ModelSamplingFlux, KSampler) wrap."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

# ModelSamplingFlux's line through (256, base_shift) and (4096, max_shift) in image tokens.
FLUX_SHIFT_TOKENS = (256, 4096)


@dataclass(frozen=True)
class SamplerSettings:
    steps: int
    guidance: float
    sampler_name: str
    scheduler: str
    denoise: float
    max_shift: float
    base_shift: float


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
    """FLUX from ComfyUI's model folders, as UNETLoader, DualCLIPLoader (type flux) and VAELoader load it."""
    import comfy.sd
    import comfy.utils
    import folder_paths

    dtypes = {
        "fp8_e4m3fn": {"dtype": torch.float8_e4m3fn},
        "fp8_e4m3fn_fast": {"dtype": torch.float8_e4m3fn, "fp8_optimizations": True},
        "fp8_e5m2": {"dtype": torch.float8_e5m2},
    }
    unet = folder_paths.get_full_path_or_raise("diffusion_models", unet_name)
    model = comfy.sd.load_diffusion_model(unet, model_options=dict(dtypes.get(weight_dtype, {})))
    encoders = [folder_paths.get_full_path_or_raise("text_encoders", name) for name in (clip_name1, clip_name2)]
    clip = comfy.sd.load_clip(
        ckpt_paths=encoders,
        embedding_directory=folder_paths.get_folder_paths("embeddings"),
        clip_type=comfy.sd.CLIPType.FLUX,
        model_options={},
    )
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("vae", vae_name)))
    vae.throw_exception_if_invalid()
    return model, clip, vae


def flux_shifted(model, max_shift: float, base_shift: float, width: int, height: int):
    """A clone of `model` sampling with FLUX's resolution-dependent shift (what ModelSamplingFlux patches)."""
    import comfy.model_sampling

    low, high = FLUX_SHIFT_TOKENS
    slope = (max_shift - base_shift) / (high - low)
    shift = (width * height / (8 * 8 * 2 * 2)) * slope + (base_shift - slope * low)

    class ModelSamplingAdvanced(comfy.model_sampling.ModelSamplingFlux, comfy.model_sampling.CONST):
        pass

    sampling = ModelSamplingAdvanced(model.model.model_config)
    sampling.set_parameters(shift=shift)
    patched = model.clone()
    patched.add_object_patch("model_sampling", sampling)
    return patched


def _ksample(model, seed: int, settings: SamplerSettings, positive, negative, latent: dict):
    """KSampler at cfg 1 on `latent` (its noise_mask respected): the new samples."""
    import comfy.sample
    import comfy.utils
    import latent_preview

    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(samples, seed, latent.get("batch_index"))
    callback = latent_preview.prepare_callback(model, settings.steps)
    return comfy.sample.sample(
        model,
        noise,
        settings.steps,
        1.0,
        settings.sampler_name,
        settings.scheduler,
        positive,
        negative,
        samples,
        denoise=settings.denoise,
        noise_mask=latent.get("noise_mask"),
        callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=seed,
    )


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


def _start_latent(vae, layout, references, denoise: float) -> dict:
    """Empty for text -> views; the encoded references with a mask of the panels to generate otherwise."""
    import comfy.model_management

    from .comfy_io import images_to_tensor

    if references is None:
        if denoise < 1.0:
            raise ValueError("ICLoRASampler: denoise < 1 needs reference_images to start from")
        shape = [1, 16, layout.height // 8, layout.width // 8]
        return {"samples": torch.zeros(shape, device=comfy.model_management.intermediate_device())}
    pixels = images_to_tensor([references.composite])
    mask = torch.from_numpy(references.generate_mask)[None, None]
    return {"samples": vae.encode(pixels[:, :, :, :3]), "noise_mask": mask}


def sample_composite(model, clip, vae, text, layout, seed, settings: SamplerSettings, references):
    """One seed: (composite IMAGE, LATENT)."""
    from .comfy_io import images_to_tensor

    width, height = layout.width, layout.height
    shift_key = (settings.max_shift, settings.base_shift, width, height)
    model = _remember(model, "_mvic_shift", shift_key, lambda: flux_shifted(model, *shift_key))
    positive, negative = _encode(clip, text, settings.guidance)
    latent = _start_latent(vae, layout, references, settings.denoise)
    samples = _ksample(model, seed, settings, positive, negative, latent)
    if references is not None and settings.denoise >= 1.0:
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
