"""Whether the frozen FLUX linears multiply in FP8 (`fp8_matmul`: auto / on / off).

The launcher (trainers/launch_sd_scripts.py --fp8-matmul) stores FLUX's token linears in e4m3 with
channel scales and runs their forward product and input gradient as `torch._scaled_mm`
(trainers/fp8_linear.py); the LoRA branch stays in bf16. That needs FP8 tensor cores: compute
capability 8.9 or newer (Ada, Hopper, Blackwell). `on` is refused up front on anything else; `auto`
turns it on only where it was measured faster on the GPU machine (BENCHMARKS.md, one H200):

* the 80 preset compiled: 0.434 s/step with FP8 against 0.462 in bf16 (same call, same seed; the
  loss and LoRA match, see the quality guard), and 47.0 instead of 54.2 GiB;
* nowhere eager: there the row-wise quantisation runs as separate kernels and costs more than the FP8
  product saves (24 preset: 1.25 s/step against 1.09 for sd-scripts' own fp8_base, which casts the
  weights back to bf16 for each product), nor in presets not measured compiled with it.

The memory presets that cache T5-XXL outputs near their peak (12, 8) keep T5 in e4m3 meanwhile
(`--fp8-t5`), whatever fp8_matmul says: that is storage, not FP8 arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from .presets import VramPreset

FP8_CHOICES = ("auto", "on", "off")
MIN_CAPABILITY = (8, 9)
MEASURED_FASTER = ("80",)  # presets where auto turns FP8 on, compiled
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


def plan_fp8(choice: str, preset: VramPreset, gpus: list[dict], compiling: bool) -> Fp8Plan:
    check_fp8_choice(choice, gpus)
    t5 = preset.fp8_t5
    if choice == "off":
        return Fp8Plan(False, t5, "fp8_matmul=off")
    if choice == "on":
        return Fp8Plan(True, t5, "fp8_matmul=on")
    lacking = fp8_unavailable(gpus)
    if lacking:
        return Fp8Plan(False, t5, f"bf16: {lacking}")
    if not compiling:
        return Fp8Plan(False, t5, "eager: FP8 measured slower than bf16 without torch.compile")
    if preset.name not in MEASURED_FASTER:
        return Fp8Plan(False, t5, f"not measured compiled with the '{preset.name}' preset (fp8_matmul=on to try it)")
    return Fp8Plan(True, t5, "compiled: FP8 products measured faster than bf16")
