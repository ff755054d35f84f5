"""The headless sampler (`python -m mvic sample`): the same plan as ICLoRASampler, run through
diffusers' FluxPipeline / FluxInpaintPipeline with the LoRA loaded through peft.

Everything is built from local single files (BFL layout, as ComfyUI users have them) with
configs written here, and the tokenizers shipped in trainers/tokenizers: no hub calls."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import TOKENIZERS_DIR, TRAINERS_DIR
from ..flux_files import FluxModelFiles
from ..layout import split
from . import plan

FLUX_VAE_CONFIG = {
    "_class_name": "AutoencoderKL",
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 16,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "act_fn": "silu",
}


@dataclass
class SampleResult:
    composite: np.ndarray  # H x W x 3 uint8
    views: list[np.ndarray]
    prompt: str
    lora_modules: int = 0  # transformer layers peft injected the LoRA into


def _transformer_config(path: Path) -> dict:
    """FLUX geometry from the file's own keys (block counts, text and pooled widths)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        keys = list(handle.keys())
        txt = handle.get_slice("txt_in.weight").get_shape()
        vec = handle.get_slice("vector_in.in_layer.weight").get_shape()
    count = lambda prefix: 1 + max(int(k.split(".")[1]) for k in keys if k.startswith(prefix))  # noqa: E731
    return {
        "_class_name": "FluxTransformer2DModel",
        "patch_size": 1,
        "in_channels": 64,
        "num_layers": count("double_blocks."),
        "num_single_layers": count("single_blocks."),
        "attention_head_dim": 128,
        "num_attention_heads": 24,
        "joint_attention_dim": txt[1],
        "pooled_projection_dim": vec[1],
        "guidance_embeds": any(k.startswith("guidance_in.") for k in keys),
        "axes_dims_rope": [16, 56, 56],
    }


def cpu_compute():
    """On a CPU without native bf16 the pipeline's linears and convolutions compute in fp32 for the call
    (trainers/cpu_precision.py, the same as sd-scripts runs there): bf16 is emulated and several times slower."""
    spec = importlib.util.spec_from_file_location("mvic_cpu_precision", TRAINERS_DIR / "cpu_precision.py")
    precision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(precision)
    return precision.fp32_compute() if precision.needs_fp32_compute() else contextlib.nullcontext()


def _load_state(model_cls, config, path: Path, dtype, prefix_to_strip: str = ""):
    import torch
    from safetensors.torch import load_file

    with torch.device("meta"):
        model = model_cls(config)
    state = load_file(str(path))
    own = set(model.state_dict())
    if prefix_to_strip and not any(k.startswith(prefix_to_strip) for k in own):
        state = {k[len(prefix_to_strip) :] if k.startswith(prefix_to_strip) else k: v for k, v in state.items()}
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False, assign=True)
    return model.to(dtype)


# The architectures of FLUX.1's text encoders and its scheduler (single files carry no config).
CLIP_L_CONFIG = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=768,
)
T5_XXL_CONFIG = dict(
    vocab_size=32128,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_heads=64,
    feed_forward_proj="gated-gelu",
    is_encoder_decoder=False,
    use_cache=False,
)
FLUX_SCHEDULER_CONFIG = dict(
    shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
)


def build_pipeline(files: FluxModelFiles, inpaint: bool = False, dtype_name: str = "bfloat16"):
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxInpaintPipeline,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    dtype = getattr(torch, dtype_name)
    with tempfile.TemporaryDirectory() as configs:
        for name, config in (("transformer", _transformer_config(files.flux)), ("vae", FLUX_VAE_CONFIG)):
            (Path(configs) / name).mkdir()
            (Path(configs) / name / "config.json").write_text(json.dumps(config))
        transformer = FluxTransformer2DModel.from_single_file(
            str(files.flux), config=configs, subfolder="transformer", torch_dtype=dtype, local_files_only=True
        )
        vae = AutoencoderKL.from_single_file(
            str(files.ae), config=configs, subfolder="vae", torch_dtype=dtype, local_files_only=True
        )
    clip = _load_state(CLIPTextModel, CLIPTextConfig(**CLIP_L_CONFIG), files.clip_l, dtype, "text_model.")
    t5 = _load_state(T5EncoderModel, T5Config(**T5_XXL_CONFIG), files.t5xxl, dtype)
    t5.encoder.embed_tokens = t5.shared  # tied in T5; single files store only `shared`
    scheduler = FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG)
    pipeline_cls = FluxInpaintPipeline if inpaint else FluxPipeline
    return pipeline_cls(
        scheduler=scheduler,
        vae=vae,
        text_encoder=clip,
        tokenizer=CLIPTokenizer.from_pretrained(
            str(TOKENIZERS_DIR / "openai_clip-vit-large-patch14"), model_max_length=77
        ),
        text_encoder_2=t5,
        tokenizer_2=T5TokenizerFast.from_pretrained(str(TOKENIZERS_DIR / "google_t5-v1_1-xxl")),
        transformer=transformer,
    )


def sample(
    files: FluxModelFiles,
    prompt: str,
    panel_prompts: str = "",
    lora: Path | None = None,
    lora_strength: float = 1.0,
    rows: int = 0,
    cols: int = 0,
    panel_width: int = 0,
    panel_height: int = 0,
    seed: int = 0,
    steps: int = 20,
    guidance: float = 3.5,
    references: list[np.ndarray] | None = None,
    reference_panels: str = "1",
    max_sequence_length: int = 512,
) -> SampleResult:
    """Text -> composite -> views; with references, the other panels only (inpainting)."""
    import torch
    from PIL import Image

    defaults = plan.LoraDefaults.from_lora(lora)  # validated before anything is built or allocated
    layout = plan.resolve_layout(rows, cols, panel_width, panel_height, defaults)
    text = plan.assemble_prompt(prompt, panel_prompts, plan.resolve_markers(layout, defaults), defaults.trigger)
    pipe = build_pipeline(files, inpaint=references is not None)
    injected = 0
    if lora:
        pipe.load_lora_weights(str(lora), adapter_name="iclora")
        pipe.set_adapters(["iclora"], adapter_weights=[lora_strength])
        injected = sum(1 for _, m in pipe.transformer.named_modules() if "iclora" in getattr(m, "lora_A", {}))
    call = dict(
        prompt=text,
        height=layout.height,
        width=layout.width,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(seed),
        max_sequence_length=max_sequence_length,
        output_type="np",
    )
    if references is not None:
        refs = plan.plan_references(references, plan.parse_panel_list(reference_panels, layout.count), layout)
        call.update(
            image=Image.fromarray(refs.composite),
            mask_image=Image.fromarray((refs.generate_mask * 255).astype(np.uint8)),
            strength=1.0,
        )
    with cpu_compute():
        image = (np.clip(np.nan_to_num(pipe(**call).images[0]), 0, 1) * 255).round().astype(np.uint8)
    if references is not None:  # reference panels come back as given
        keep = (refs.generate_mask == 0)[..., None]
        image = np.where(keep, refs.composite, image)
    return SampleResult(
        composite=image, views=split(image, layout.rows, layout.cols), prompt=text, lora_modules=injected
    )
