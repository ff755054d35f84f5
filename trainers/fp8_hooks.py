"""FP8 hooks our launcher installs into sd-scripts before its training script runs (in every rank).

    install_fp8_matmul()  FLUX's token linears become FP8 `fp8_linear.Linear`s as the model is loaded,
                          before sd-scripts casts it (--fp8_base), wraps it in LoRA or compiles it.
    install_fp8_t5()      T5-XXL is cast to e4m3 as it is loaded, the way an fp8 T5 file arrives, so
                          caching its outputs needs ~4.5 GiB of GPU memory instead of ~9 GiB (the peak of
                          the 12 and 8 presets). sd-scripts' own fp8-T5 path then runs it.

sd-scripts calls `flux_utils.load_flow_model` / `flux_utils.load_t5xxl` through the module, so replacing
those attributes is enough; nothing in the checkout is modified.
"""

from __future__ import annotations

import sys
import time

import torch

import fp8_linear


def _log(message: str) -> None:
    print(f"[mvic] {message}", file=sys.stderr, flush=True)


def _work_device() -> torch.device | None:
    # Quantise on the GPU (seconds) rather than the CPU (tens of seconds); each rank uses its own GPU.
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None


def check_fp8_device() -> None:
    """Refuse a CUDA GPU without FP8 tensor cores. Without CUDA, torch's CPU _scaled_mm computes the
    same function slowly (our CPU tests use it); the trainer refuses that for real runs."""
    if torch.cuda.is_available():
        reason = fp8_linear.fp8_unavailable_reason()
        if reason:
            sys.exit(f"[mvic] fp8_matmul: {reason}. Train with fp8_matmul=off.")
    else:
        _log("fp8 matmul on the CPU: torch's reference _scaled_mm (tests only; slow)")


def install_fp8_matmul() -> None:
    from library import flux_utils

    check_fp8_device()
    load_flow_model = flux_utils.load_flow_model

    def load_with_fp8_linears(*args, **kwargs):
        loaded = load_flow_model(*args, **kwargs)
        model = loaded[1]
        started = time.monotonic()
        count = fp8_linear.swap_linears(model, work_device=_work_device())
        seconds = time.monotonic() - started
        _log(f"fp8 matmul: {count} FLUX linears stored in e4m3 with channel scales ({seconds:.1f} s)")
        return loaded

    flux_utils.load_flow_model = load_with_fp8_linears


def cast_to_e4m3(module: torch.nn.Module, work_device: torch.device | None) -> None:
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.is_floating_point() and tensor.dtype != fp8_linear.E4M3:
            home = tensor.device
            tensor.data = (tensor.data.to(work_device) if work_device else tensor.data).to(fp8_linear.E4M3).to(home)


def install_fp8_t5() -> None:
    from library import flux_utils

    load_t5xxl = flux_utils.load_t5xxl

    def load_t5xxl_in_e4m3(*args, **kwargs):
        t5xxl = load_t5xxl(*args, **kwargs)
        if t5xxl.dtype != fp8_linear.E4M3:
            started = time.monotonic()
            cast_to_e4m3(t5xxl, _work_device())
            _log(f"T5-XXL cast to e4m3 for caching its outputs ({time.monotonic() - started:.1f} s)")
        return t5xxl

    flux_utils.load_t5xxl = load_t5xxl_in_e4m3
