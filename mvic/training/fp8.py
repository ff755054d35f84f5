"""Whether the frozen FLUX linears multiply in FP8 (`fp8_matmul`: auto / on / off).

The launcher (trainers/launch_sd_scripts.py --fp8-matmul) stores FLUX's token linears in e4m3 with
channel scales and runs their forward product and input gradient as `torch._scaled_mm`
(trainers/fp8_linear.py); the LoRA branch stays in bf16. That needs FP8 tensor cores: compute
capability 8.9 or newer (Ada, Hopper, Blackwell). `on` is refused up front on anything else; `auto`
turns it on only where it was measured faster on the GPU machine (BENCHMARKS.md, H200):

* presets whose base is fp8 already (24, 16, 12, 8, or --fp8_base): sd-scripts would cast every
  weight back to bf16 for each product; the FP8 product reads the stored weight as it is;
* a compiled run (torch.compile fuses the row-wise quantisation into neighbouring kernels).

An eager bf16 run (80 and 48 presets without compile) stays bf16: there, quantising the activations
in separate kernels costs about what the FP8 product saves (the issue's microbenchmark).
"""
from __future__ import annotations

from dataclasses import dataclass

from .presets import VramPreset

FP8_CHOICES = ("auto", "on", "off")
MIN_CAPABILITY = (8, 9)
NEEDS = "FP8 tensor cores need compute capability 8.9 or newer (RTX 40xx and later, L4/L40, H100/H200, B200)"


class Fp8Refused(ValueError):
    pass


@dataclass(frozen=True)
class Fp8Plan:
    matmul: bool  # FP8 products for the frozen FLUX linears
    t5: bool  # T5-XXL in e4m3 while its outputs are cached (the memory presets' peak)
    reason: str

    def launcher_args(self) -> list[str]:
        return (["--fp8-matmul"] if self.matmul else []) + (["--fp8-t5"] if self.t5 else [])


def capability(gpu: dict) -> tuple[int, int] | None:
    """'9.0' (as trainers/probe_env.py reports it) -> (9, 0)."""
    text = str(gpu.get("capability") or "")
    major, _, minor = text.partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else None


def fp8_unavailable(gpus: list[dict]) -> str | None:
    """Why the GPUs chosen for training cannot multiply in FP8, or None when all of them can."""
    if not gpus:
        return "no CUDA GPU is visible to sd-scripts' Python"
    for gpu in gpus:
        found = capability(gpu)
        if found is None:
            return f"GPU {gpu['index']} ({gpu['name']}) reported no compute capability"
        if found < MIN_CAPABILITY:
            return f"GPU {gpu['index']} ({gpu['name']}) has compute capability {found[0]}.{found[1]}"
    return None


def check_fp8_choice(choice: str, gpus: list[dict]) -> None:
    """Up front, before anything is written: a bad value, or `on` where FP8 cannot run."""
    if choice not in FP8_CHOICES:
        raise ValueError(f"fp8_matmul {choice!r}: choose one of {', '.join(FP8_CHOICES)}")
    lacking = fp8_unavailable(gpus)
    if choice == "on" and lacking:
        raise Fp8Refused(f"fp8_matmul=on: {lacking}; {NEEDS}. Set fp8_matmul to auto (uses bf16 here) or off")


def plan_fp8(choice: str, preset: VramPreset, gpus: list[dict], compiling: bool, extra_args: list[str] = ()) -> Fp8Plan:
    check_fp8_choice(choice, gpus)
    t5 = preset.fp8_t5
    if choice == "off":
        return Fp8Plan(False, t5, "fp8_matmul=off")
    if choice == "on":
        return Fp8Plan(True, t5, "fp8_matmul=on")
    lacking = fp8_unavailable(gpus)
    if lacking:
        return Fp8Plan(False, t5, f"bf16: {lacking}")
    if preset.fp8_base or "--fp8_base" in extra_args or "--fp8_base_unet" in extra_args:
        return Fp8Plan(True, t5, f"the '{preset.name}' preset stores the base in fp8: multiply in fp8 too")
    if compiling:
        return Fp8Plan(True, t5, "compiled: FP8 products measured faster than bf16")
    return Fp8Plan(False, t5, "eager bf16: FP8 is faster only compiled (compile=on) or with an fp8 base")
