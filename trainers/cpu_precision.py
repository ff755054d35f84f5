"""CPU-only runs on a CPU without native bf16 (AVX2 only, e.g. AMD Zen 3): compute in fp32, store in bf16.

Runs inside sd-scripts' Python (imported by launch_sd_scripts.py). CPU runs are the tests' tiny models;
on such a CPU torch's bf16 matmuls and convolutions take a slow path (measured on the 2-core test
machine, one thread: a 320x3072x12288 linear 10.7 s in bf16, 2.7 s in fp32; a backward 400 s per
training step). Weights stay bf16 in memory; each linear casts its operands for the one call.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F


def needs_fp32_compute() -> bool:
    """A CPU-only run on a CPU whose bf16 matmuls are emulated."""
    return not torch.cuda.is_available() and not torch.ops.mkldnn._is_mkldnn_bf16_supported()


def install() -> None:
    """Linears compute in fp32; dtype-less CPU autocast (sd-scripts' LoRA grad-norm logging) turns fp32."""
    bf16_linear = F.linear

    def linear(input, weight, bias=None):
        autocast = torch.is_autocast_enabled("cpu")
        if input.device.type != "cpu" or not (autocast or torch.bfloat16 in (input.dtype, weight.dtype)):
            return bf16_linear(input, weight, bias)
        out_dtype = torch.bfloat16 if autocast else input.dtype
        with torch.autocast("cpu", enabled=False):
            out = bf16_linear(input.float(), weight.float(), None if bias is None else bias.float())
        return out.to(out_dtype)

    F.linear = linear
    # networks/lora_flux.py update_grad_norms runs under torch.autocast("cpu") with no dtype, i.e. bf16
    # (~37 s a step here); training's own autocast names its dtype (accelerate), so only such calls change.
    torch.set_autocast_dtype("cpu", torch.float32)
    # torch says once that it "disables autocast" for fp32: that is the point, not a problem to report.
    warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported")
