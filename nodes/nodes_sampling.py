"""ICLoRASampler (text -> composite -> views; image -> other views) and a FLUX loader that
waits for the trainer. Decisions live in mvic.sampling.plan; this file only drives
ComfyUI's own model, CLIP, VAE and KSampler machinery."""
from __future__ import annotations

from ..mvic.layout import FIT_MODES
from .comfy_io import confined_model_path, model_choices, model_path

NO_LORA = "(none)"


def _sampler_lists():
    try:
        import comfy.samplers

        return list(comfy.samplers.KSampler.SAMPLERS), list(comfy.samplers.KSampler.SCHEDULERS)
    except ImportError:  # outside ComfyUI (static tests)
        return ["euler"], ["simple"]


class ICLoRASampler:
    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = "Samples a multi-view composite with an IC-LoRA and splits it into views; with reference images, generates only the other panels."
    RETURN_TYPES = ("IMAGE", "IMAGE", "STRING", "LATENT", "STRING")
    RETURN_NAMES = ("composite", "views", "prompt", "latent", "candidates")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        samplers, schedulers = _sampler_lists()
        return {
            "required": {
                "model": ("MODEL",),
                "clip": ("CLIP",),
                "vae": ("VAE",),
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "a full marker caption, or a summary with panel_prompts"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
                "steps": ("INT", {"default": 20, "min": 1, "max": 200}),
                "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}),
                "sampler_name": (samplers, {"default": "euler"}),
                "scheduler": (schedulers, {"default": "simple"}),
            },
            "optional": {
                "panel_prompts": ("STRING", {"multiline": True, "default": "", "tooltip": "one line per panel, reading order"}),
                "lora_name": ([NO_LORA, *model_choices("loras")], {"default": NO_LORA}),
                "lora_path": ("STRING", {"default": "", "tooltip": (
                    "connect LoRATrainer's lora_path (a file in ComfyUI's loras folders); wins over lora_name")}),
                "lora_strength": ("FLOAT", {"default": 1.0, "min": -4.0, "max": 4.0, "step": 0.05}),
                "rows": ("INT", {"default": 0, "min": 0, "max": 8, "tooltip": "0 = as the LoRA was trained (else 2)"}),
                "cols": ("INT", {"default": 0, "min": 0, "max": 8}),
                "panel_width": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 16}),
                "panel_height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 16}),
                "trigger": ("STRING", {"default": ""}),
                "reference_images": ("IMAGE",),
                "reference_panels": ("STRING", {"default": "1", "tooltip": "panel numbers (1-based) the reference images go into"}),
                "reference_fit": (list(FIT_MODES), {"default": "crop"}),
                "seam_blend": ("INT", {"default": 0, "min": 0, "max": 128, "tooltip": "pixels of soft mask next to references"}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "< 1 with references: SDEdit-restyle all views"}),
                "max_shift": ("FLOAT", {"default": 1.15, "min": 0.0, "max": 100.0, "step": 0.01}),
                "base_shift": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 100.0, "step": 0.01}),
                "candidates": ("INT", {"default": 1, "min": 1, "max": 16, "tooltip": (
                    "sample seeds seed .. seed+N-1 and return them best first by consistency score "
                    "(candidates output: rank, seed, score)")}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, lora_name=None, lora_path=None):
        """At queue time: a LoRA from the loras folders only, and its metadata sane (read from the
        header, nothing allocated). A linked lora_path (None here) is checked when the node runs.
        (ComfyUI then leaves lora_name's list check to us.)"""
        try:
            if lora_path is not None and lora_path.strip():  # wins over lora_name; linked (None): checked when run
                chosen_lora(NO_LORA, lora_path)
            if lora_name is not None and lora_name != NO_LORA:
                if lora_name not in model_choices("loras"):
                    return f"ICLoRASampler.lora_name {lora_name!r} is not a file in ComfyUI's loras folders"
                if lora_path is not None and not lora_path.strip():
                    chosen_lora(lora_name, "")
        except (ValueError, OSError) as exc:
            return str(exc)
        return True

    def sample(self, model, clip, vae, prompt, seed, steps, guidance, sampler_name, scheduler, panel_prompts="", lora_name=NO_LORA,
               lora_path="", lora_strength=1.0, rows=0, cols=0, panel_width=0, panel_height=0, trigger="", reference_images=None,
               reference_panels="1", reference_fit="crop", seam_blend=0, denoise=1.0, max_shift=1.15, base_shift=0.5,
               candidates=1):
        from ..mvic.sampling import plan
        from . import comfy_sampling

        lora, defaults = chosen_lora(lora_name, lora_path)
        layout = plan.resolve_layout(rows, cols, panel_width, panel_height, defaults)
        text = plan.assemble_prompt(prompt, panel_prompts, plan.resolve_markers(layout, defaults), trigger or defaults.trigger)
        if lora:
            model = comfy_sampling.apply_lora(model, lora, lora_strength)
        references = None
        if reference_images is not None:
            from .comfy_io import tensor_to_images

            panels = plan.parse_panel_list(reference_panels, layout.count)
            references = plan.plan_references(tensor_to_images(reference_images), panels, layout, reference_fit, seam_blend)
        seeds = [(seed + i) % 2**64 for i in range(max(1, candidates))]
        samples = [comfy_sampling.sample_composite(model, clip, vae, text, layout, s, steps, guidance, sampler_name,
                                                   scheduler, denoise, max_shift, base_shift, references) for s in seeds]
        composite, latent, ranking = comfy_sampling.ranked(samples, seeds, layout)
        return (composite, comfy_sampling.split_views(composite, layout), text, latent, ranking)


def chosen_lora(lora_name: str, lora_path: str):
    """(path or '', its validated defaults): lora_path (inside ComfyUI's loras folders) wins over lora_name."""
    from ..mvic.sampling import plan

    if lora_path.strip():
        lora = str(confined_model_path(lora_path, "loras", "ICLoRASampler.lora_path"))
    else:
        lora = model_path("loras", lora_name) if lora_name != NO_LORA else ""
    return lora, plan.LoraDefaults.from_lora(lora or None)


class FluxLoaderAfterTraining:
    """Loads FLUX only once its `after` input (the trained LoRA path) exists, so ComfyUI
    cannot load 24 GB of FLUX while sd-scripts still needs the memory."""

    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = "UNET + CLIP-L/T5 + VAE loader that runs after the LoRATrainer (connect its lora_path to 'after')."
    RETURN_TYPES = ("MODEL", "CLIP", "VAE", "STRING")
    RETURN_NAMES = ("model", "clip", "vae", "lora_path")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        text = model_choices("text_encoders")
        return {
            "required": {
                "after": ("STRING", {"forceInput": True}),
                "unet_name": (model_choices("diffusion_models"),),
                "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],),
                "clip_name1": (text,),
                "clip_name2": (text,),
                "vae_name": (model_choices("vae"),),
            }
        }

    def load(self, after, unet_name, weight_dtype, clip_name1, clip_name2, vae_name):
        from . import comfy_sampling

        model, clip, vae = comfy_sampling.load_flux(unet_name, weight_dtype, clip_name1, clip_name2, vae_name)
        return (model, clip, vae, after)


NODE_CLASS_MAPPINGS = {"MVIC_ICLoRASampler": ICLoRASampler, "MVIC_FluxLoaderAfterTraining": FluxLoaderAfterTraining}
NODE_DISPLAY_NAME_MAPPINGS = {"MVIC_ICLoRASampler": "ICLoRASampler", "MVIC_FluxLoaderAfterTraining": "FluxLoaderAfterTraining"}
