"""Load a kohya FLUX LoRA through diffusers' FLUX LoRA loader (peft) into a FLUX transformer
of the tiny model's geometry; report how many LoRA modules were injected.
Usage: python lora_check_diffusers.py LORA"""

import json
import sys

import torch
from diffusers import FluxTransformer2DModel
from diffusers.loaders import FluxLoraLoaderMixin
from safetensors import safe_open

lora_path = sys.argv[1]
with torch.device("cpu"):
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
    ).to(torch.bfloat16)
state_dict, alphas = FluxLoraLoaderMixin.lora_state_dict(lora_path, return_alphas=True)
FluxLoraLoaderMixin.load_lora_into_transformer(state_dict, network_alphas=alphas, transformer=transformer)
injected = [name for name, module in transformer.named_modules() if hasattr(module, "lora_A") and len(module.lora_A)]
with safe_open(lora_path, "pt") as handle:
    file_modules = sorted({k.split(".")[0] for k in handle.keys()})
# diffusers splits kohya's fused projections: qkv -> q, k, v; single blocks' linear1 -> q, k, v, mlp.
expected = sum(3 if m.endswith("_qkv") else 4 if m.endswith("_linear1") else 1 for m in file_modules)
with torch.no_grad():
    nonzero = sum(
        float(module.lora_B[next(iter(module.lora_B))].weight.abs().sum()) > 0
        for _, module in transformer.named_modules()
        if hasattr(module, "lora_B") and len(module.lora_B)
    )
print(
    "RESULT "
    + json.dumps(
        {"file_modules": len(file_modules), "expected": expected, "injected": len(injected), "nonzero_up": nonzero}
    )
)
