"""ICLoRASampler (text -> composite -> views; image -> other views) and a FLUX loader that
waits for the trainer. Decisions live in mvic.sampling.plan; this file only drives
ComfyUI's own model, CLIP, VAE and KSampler machinery."""

from __future__ import annotations

from comfy_api.latest import io

from ..mvic.layout import FIT_MODES
from .comfy_io import category, confined_model_path, inside_comfyui, model_choices, model_path, split_views

NO_LORA = "(none)"
WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]


def _sampler_lists():
    if not inside_comfyui():  # static tests, the workflow converter
        return ["euler"], ["simple"]
    import comfy.samplers

    return list(comfy.samplers.KSampler.SAMPLERS), list(comfy.samplers.KSampler.SCHEDULERS)


# A declarative table, kept compact: one argument a line would take it past 60 lines.
# fmt: off
def _sampler_inputs() -> list:
    samplers, schedulers = _sampler_lists()
    return [
        io.Model.Input("model", tooltip="FLUX (e.g. from Load Diffusion Model or the FLUX Loader after training)"),
        io.Clip.Input("clip", tooltip="CLIP-L + T5-XXL of FLUX (DualCLIPLoader, type flux)"),
        io.Vae.Input("vae", tooltip="the FLUX autoencoder (ae.safetensors)"),
        io.String.Input("prompt", multiline=True, default="",
                        tooltip="a full marker caption, or a summary with panel_prompts"),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                     tooltip="noise seed; the control below picks the next one after each run (randomize: new views)"),
        io.Int.Input("steps", default=20, min=1, max=200, tooltip="sampling steps (FLUX-dev: 20-30)"),
        io.Float.Input("guidance", default=3.5, min=0.0, max=100.0, step=0.1,
                       tooltip="FLUX guidance (distilled CFG); cfg itself stays 1"),
        io.Combo.Input("sampler_name", options=samplers, default="euler", tooltip="ComfyUI's sampler"),
        io.Combo.Input("scheduler", options=schedulers, default="simple", tooltip="ComfyUI's noise schedule"),
        io.String.Input("panel_prompts", multiline=True, default="", optional=True,
                        tooltip="one line per panel, reading order"),
        io.Combo.Input("lora_name", options=[NO_LORA, *model_choices("loras")], default=NO_LORA, optional=True,
                       tooltip="the IC-LoRA from ComfyUI's loras folders; its metadata sets layout, markers, trigger"),
        io.String.Input("lora_path", default="", optional=True, tooltip=(
            "connect LoRATrainer's lora_path (a file in ComfyUI's loras folders); wins over lora_name")),
        io.Float.Input("lora_strength", default=1.0, min=-4.0, max=4.0, step=0.05, optional=True,
                       tooltip="how strongly the LoRA applies (1 = as trained)"),
        io.Int.Input("rows", default=0, min=0, max=8, optional=True, tooltip="0 = as the LoRA was trained (else 2)"),
        io.Int.Input("cols", default=0, min=0, max=8, optional=True, tooltip="0 = as the LoRA was trained (else 2)"),
        io.Int.Input("panel_width", default=0, min=0, max=4096, step=16, optional=True,
                     tooltip="pixels, a multiple of 16; 0 = as the LoRA was trained (else 512)"),
        io.Int.Input("panel_height", default=0, min=0, max=4096, step=16, optional=True,
                     tooltip="pixels, a multiple of 16; 0 = as the LoRA was trained (else 512)"),
        io.String.Input("trigger", default="", optional=True, tooltip="word put before the prompt; empty = the LoRA's"),
        io.Image.Input("reference_images", optional=True, tooltip="photos to keep: the other panels are generated"),
        io.String.Input("reference_panels", default="1", optional=True,
                        tooltip="panel numbers (1-based) the reference images go into"),
        io.Combo.Input("reference_fit", options=list(FIT_MODES), default="crop", optional=True,
                       tooltip="how a reference fills its panel: crop, pad or stretch"),
        io.Int.Input("seam_blend", default=0, min=0, max=128, optional=True,
                     tooltip="pixels of soft mask next to references"),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01, optional=True,
                       tooltip="< 1 with references: SDEdit-restyle all views"),
        io.Float.Input("max_shift", default=1.15, min=0.0, max=100.0, step=0.01, optional=True,
                       tooltip="FLUX timestep shift at large images (ModelSamplingFlux)"),
        io.Float.Input("base_shift", default=0.5, min=0.0, max=100.0, step=0.01, optional=True,
                       tooltip="FLUX timestep shift at small images (ModelSamplingFlux)"),
        io.Int.Input("candidates", default=1, min=1, max=16, optional=True, tooltip=(
            "sample seeds seed .. seed+N-1 and return them best first by consistency score "
            "(candidates output: rank, seed, score)")),
    ]
# fmt: on


class ICLoRASampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MVIC_ICLoRASampler",
            display_name="IC-LoRA Sampler",
            category=category("sample"),
            description=(
                "Samples a multi-view composite with an IC-LoRA and splits it into views; with reference "
                "images, generates only the other panels."
            ),
            inputs=_sampler_inputs(),
            outputs=[
                io.Image.Output(display_name="composite"),
                io.Image.Output(display_name="views"),
                io.String.Output(display_name="prompt"),
                io.Latent.Output(display_name="latent"),
                io.String.Output(display_name="candidates"),
            ],
        )

    @classmethod
    def validate_inputs(cls, lora_name=None, lora_path=None):
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

    @classmethod
    def execute(
        cls,
        model,
        clip,
        vae,
        prompt,
        seed,
        steps,
        guidance,
        sampler_name,
        scheduler,
        panel_prompts="",
        lora_name=NO_LORA,
        lora_path="",
        lora_strength=1.0,
        rows=0,
        cols=0,
        panel_width=0,
        panel_height=0,
        trigger="",
        reference_images=None,
        reference_panels="1",
        reference_fit="crop",
        seam_blend=0,
        denoise=1.0,
        max_shift=1.15,
        base_shift=0.5,
        candidates=1,
    ) -> io.NodeOutput:
        from ..mvic.sampling import plan
        from . import comfy_sampling

        lora, defaults = chosen_lora(lora_name, lora_path)
        layout = plan.resolve_layout(rows, cols, panel_width, panel_height, defaults)
        markers = plan.resolve_markers(layout, defaults)
        text = plan.assemble_prompt(prompt, panel_prompts, markers, trigger or defaults.trigger)
        if lora:
            model = comfy_sampling.apply_lora(model, lora, lora_strength)
        references = None
        if reference_images is not None:
            from .comfy_io import tensor_to_images

            panels = plan.parse_panel_list(reference_panels, layout.count)
            references = plan.plan_references(
                tensor_to_images(reference_images), panels, layout, reference_fit, seam_blend
            )
        settings = comfy_sampling.SamplerSettings(
            steps, guidance, sampler_name, scheduler, denoise, max_shift, base_shift
        )
        seeds = [(seed + i) % 2**64 for i in range(max(1, candidates))]
        samples = [
            comfy_sampling.sample_composite(model, clip, vae, text, layout, s, settings, references) for s in seeds
        ]
        composite, latent, ranking = comfy_sampling.ranked(samples, seeds, layout)
        return io.NodeOutput(composite, split_views(composite, layout.rows, layout.cols), text, latent, ranking)


def chosen_lora(lora_name: str, lora_path: str):
    """(path or '', its validated defaults): lora_path (inside ComfyUI's loras folders) wins over lora_name."""
    from ..mvic.sampling import plan

    if lora_path.strip():
        lora = str(confined_model_path(lora_path, "loras", "ICLoRASampler.lora_path"))
    else:
        lora = model_path("loras", lora_name) if lora_name != NO_LORA else ""
    return lora, plan.LoraDefaults.from_lora(lora or None)


class FluxLoaderAfterTraining(io.ComfyNode):
    """Loads FLUX only once its `after` input (the trained LoRA path) exists, so ComfyUI
    cannot load 24 GB of FLUX while sd-scripts still needs the memory."""

    @classmethod
    def define_schema(cls):
        text = model_choices("text_encoders")
        return io.Schema(
            node_id="MVIC_FluxLoaderAfterTraining",
            display_name="FLUX Loader (after training)",
            category=category("sample"),
            description=(
                "UNET + CLIP-L/T5 + VAE loader that runs after the LoRATrainer (connect its lora_path to 'after')."
            ),
            inputs=[
                io.String.Input(
                    "after",
                    force_input=True,
                    tooltip="connect the trainer's lora_path: FLUX loads only once training is done",
                ),
                io.Combo.Input(
                    "unet_name",
                    options=model_choices("diffusion_models"),
                    tooltip="the FLUX model, from ComfyUI's diffusion_models folders",
                ),
                io.Combo.Input(
                    "weight_dtype",
                    options=WEIGHT_DTYPES,
                    tooltip="fp8 halves FLUX's memory (as Load Diffusion Model's weight_dtype)",
                ),
                io.Combo.Input("clip_name1", options=text, tooltip="CLIP-L, from ComfyUI's text_encoders folders"),
                io.Combo.Input("clip_name2", options=text, tooltip="T5-XXL, from ComfyUI's text_encoders folders"),
                io.Combo.Input("vae_name", options=model_choices("vae"), tooltip="the FLUX autoencoder (vae folders)"),
            ],
            outputs=[
                io.Model.Output(display_name="model"),
                io.Clip.Output(display_name="clip"),
                io.Vae.Output(display_name="vae"),
                io.String.Output(display_name="lora_path"),
            ],
        )

    @classmethod
    def execute(cls, after, unet_name, weight_dtype, clip_name1, clip_name2, vae_name) -> io.NodeOutput:
        from . import comfy_sampling

        model, clip, vae = comfy_sampling.load_flux(unet_name, weight_dtype, clip_name1, clip_name2, vae_name)
        return io.NodeOutput(model, clip, vae, after)


NODES = [ICLoRASampler, FluxLoaderAfterTraining]
