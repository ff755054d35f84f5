"""Bytes that autograd saves for backward in a small checkpointed sd-scripts FLUX with FP8 linears:
eager, or with trainers/compile_blocks.py's compile. Run in sd-scripts' Python:

    python compile_memory_check.py SD_SCRIPTS_DIR TRAINERS_DIR eager|blocks
Prints RESULT {"saved_bytes": ..., "graphs": ..., "grad": [...]}"""

import json
import sys
from dataclasses import replace

sys.path[:0] = [sys.argv[1], sys.argv[2]]
import torch  # noqa: E402
from library import flux_models  # noqa: E402

import compile_blocks  # noqa: E402
import fp8_linear  # noqa: E402

params = replace(
    flux_models.configs["dev"].params,
    depth=2,
    depth_single_blocks=2,
    hidden_size=256,
    num_heads=4,
    axes_dim=[16, 24, 24],
)
torch.manual_seed(0)
model = flux_models.Flux(params).to(torch.bfloat16)
fp8_linear.swap_linears(model)
model.enable_gradient_checkpointing()
model.train()
model.requires_grad_(False)
if sys.argv[3] == "blocks":
    compile_blocks.compile_blocks(model)
img = torch.randn(1, 256, 64, requires_grad=True)
inputs = dict(
    img_ids=torch.zeros(1, 256, 3),
    txt=torch.randn(1, 32, 4096),
    txt_ids=torch.zeros(1, 32, 3),
    y=torch.randn(1, 768),
    timesteps=torch.rand(1),
    guidance=torch.ones(1),
)


def step() -> int:
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    img.grad = None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(img=img, **inputs)
    out.float().square().mean().backward()
    return sum(saved)


step()  # compiles
saved = step()
from torch._dynamo.utils import counters  # noqa: E402

print(
    "RESULT "
    + json.dumps(
        {
            "saved_bytes": saved,
            "graphs": counters["stats"].get("unique_graphs", 0),
            "grad": img.grad.float().flatten()[:64].tolist(),
        }
    )
)
