"""Check the FLUX model files before launching: sd-scripts reads BFL-layout single
safetensors files only. Everything else fails here, naming the file and what to use."""

from __future__ import annotations

from pathlib import Path

from ..flux_files import FluxModelFiles, ModelFileError, safetensors_header


def _keys(header: dict) -> list[str]:
    return [k for k in header if k != "__metadata__"]


def check_model_file(path: Path | str, role: str) -> Path:
    """role: 'flux', 'clip_l', 't5xxl' or 'ae'. Returns the path when sd-scripts can read it."""
    path = Path(path)
    what = {
        "flux": "FLUX.1 transformer",
        "clip_l": "CLIP-L text encoder",
        "t5xxl": "T5-XXL text encoder",
        "ae": "FLUX autoencoder (ae)",
    }[role]
    if path.is_dir():
        raise ModelFileError(
            f"{path}: a diffusers folder is not supported for the {what}; use the single-file "
            f"BFL release (e.g. flux1-dev.safetensors, clip_l.safetensors, t5xxl_fp16.safetensors, ae.safetensors)"
        )
    if not path.is_file():
        raise ModelFileError(f"{path}: the {what} file does not exist; pick it in the node or fix the path")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == b"GGUF" or path.suffix.lower() == ".gguf":
        raise ModelFileError(
            f"{path}: GGUF files can't be trained on by sd-scripts; use the bf16 or fp8_e4m3fn .safetensors {what}"
        )
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(f"{path}: sd-scripts needs a .safetensors {what}")
    header = safetensors_header(path)
    keys = _keys(header)
    if role == "t5xxl" and (
        "scaled_fp8" in header or any(k.endswith("scale_weight") or k.endswith(".scale_input") for k in keys)
    ):
        raise ModelFileError(
            f"{path}: a 'scaled' fp8 T5-XXL (e.g. t5xxl_fp8_e4m3fn_scaled) is not readable by sd-scripts; "
            "use t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors"
        )
    if role == "flux":
        if any(k.startswith("model.diffusion_model.") for k in keys) and any(
            k.startswith(("text_encoders.", "vae.", "first_stage_model.")) for k in keys
        ):
            raise ModelFileError(
                f"{path}: an all-in-one checkpoint (transformer + text encoders + VAE in one file); "
                "use the transformer-only flux1-dev.safetensors (models/diffusion_models) with separate clip_l, "
                "t5xxl and ae files"
            )
        if not any("double_blocks." in k or "transformer_blocks." in k for k in keys):
            raise ModelFileError(f"{path}: has no FLUX transformer blocks; is it really the {what}?")
    if role == "ae" and not any(k.startswith(("decoder.", "encoder.")) for k in keys):
        raise ModelFileError(f"{path}: has no encoder/decoder weights; pick the FLUX ae.safetensors")
    if role == "clip_l" and not any("text_model." in k or "transformer.resblocks" in k for k in keys):
        raise ModelFileError(f"{path}: not a CLIP-L text encoder; pick clip_l.safetensors")
    if role == "t5xxl" and not any("encoder.block." in k or "shared.weight" in k for k in keys):
        raise ModelFileError(f"{path}: not a T5-XXL encoder; pick t5xxl_fp16.safetensors")
    return path


def check_model_files(models: FluxModelFiles) -> FluxModelFiles:
    for role in ("flux", "clip_l", "t5xxl", "ae"):
        check_model_file(getattr(models, role), role)
    return models
