"""Whether to compile FLUX with torch.compile: only when the run repays the compile, by costs
measured on the GPU machine (BENCHMARKS.md, one H200, 80 preset).

Our launcher compiles block by block (`--compile-blocks`, trainers/compile_blocks.py): one graph per
block kind instead of sd-scripts' whole-model --torch_compile (all 57 blocks in one graph: first
step 224 s with a cold inductor cache, 22 s warm). Block by block, the first step took 30 s (bf16)
and 48 s (FP8) with a cold cache and 14 s warm, against ~2 s eager; compiled steps ran 0.43-0.46 s
against 0.70 eager, ~0.25 s saved a step. That repays a cold compile after ~180 steps and a warm one
after ~50: "auto" compiles the 80 preset from 200 steps cold, 50 warm. Other presets were not
measured compiled, so "auto" leaves them eager; "on" and "off" are the user's call. A user's own
--torch_compile in extra_args gets sd-scripts' whole-model compile instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..files import user_cache_dir
from .presets import VramPreset

COMPILE_CHOICES = ("auto", "on", "off")
LAUNCHER_ARGS = ("--compile-blocks",)
MIN_STEPS_COLD_CACHE = 200
MIN_STEPS_WARM_CACHE = 50
MEASURED_PRESETS = ("80",)


@dataclass(frozen=True)
class CompilePlan:
    enabled: bool
    reason: str
    cache_dir: Path
    marker: Path  # written after a compiled run succeeded: the cache is warm for this preset

    def launcher_args(self, extra_args: list[str]) -> list[str]:
        return list(LAUNCHER_ARGS) if self.enabled and "--torch_compile" not in extra_args else []

    def child_env(self) -> dict[str, str]:
        # A cache of our own, not /tmp/torchinductor_<user>: it survives reboots and /tmp cleaners.
        return {"TORCHINDUCTOR_CACHE_DIR": str(self.cache_dir)} if self.enabled else {}


def inductor_cache_dir() -> Path:
    return user_cache_dir("torchinductor")


def plan_compile(
    choice: str, preset: VramPreset, steps_to_train: int, extra_args: list[str], cache_dir: Path | None = None
) -> CompilePlan:
    if choice not in COMPILE_CHOICES:
        raise ValueError(f"compile {choice!r}: choose one of {', '.join(COMPILE_CHOICES)}")
    cache_dir = Path(cache_dir or inductor_cache_dir())
    marker = cache_dir / f"mvic-compiled-preset-{preset.name}"

    def plan(enabled: bool, reason: str) -> CompilePlan:
        return CompilePlan(enabled, reason, cache_dir, marker)

    if "--torch_compile" in extra_args:
        return plan(True, "--torch_compile given in extra_args")
    if choice != "auto":
        return plan(choice == "on", f"compile={choice}")
    if preset.name not in MEASURED_PRESETS:
        return plan(False, f"not measured with the '{preset.name}' preset (compile=on to try it)")
    warm = marker.is_file()
    needed = MIN_STEPS_WARM_CACHE if warm else MIN_STEPS_COLD_CACHE
    cache = "warm" if warm else "cold"
    if steps_to_train >= needed:
        return plan(True, f"{steps_to_train} steps repay the compile ({cache} cache: from {needed} steps)")
    return plan(False, f"{steps_to_train} steps do not repay the compile ({cache} cache: from {needed} steps)")
