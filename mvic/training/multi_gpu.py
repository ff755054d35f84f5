"""Several GPUs (`gpu_ids` = "0,1"): sd-scripts under accelerate DDP, one rank per GPU, through our
launcher. What cannot work is refused before anything starts, with the reason.

Each rank holds a whole model, so the preset is chosen for the smallest selected card. sd-scripts
already shares the caching out (rank r caches every n-th latent and text-encoder output), so
the caches are written once, not once per rank.
"""

from __future__ import annotations

from .presets import VramPreset


class MultiGpuRefused(ValueError):
    pass


def parse_gpu_ids(text: str) -> tuple[int, ...]:
    """'0, 1' -> (0, 1); names the input and the fix on anything else."""
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise MultiGpuRefused(
            f"gpu_ids {text!r}: give GPU numbers separated by commas, e.g. 0,1 (or leave it empty for one GPU)"
        )
    ids = tuple(int(p) for p in parts)
    if len(set(ids)) != len(ids):
        raise MultiGpuRefused(f"gpu_ids {text!r}: each GPU may appear once")
    return ids


def check_gpu_selection(gpu_ids: tuple[int, ...], gpus: list[dict]) -> list[dict]:
    """The probe's GPUs that the run will use (all of them when none are chosen)."""
    if not gpu_ids:
        return gpus
    visible = {g["index"]: g for g in gpus}
    missing = [i for i in gpu_ids if i not in visible]
    if missing:
        seen = ", ".join(str(i) for i in visible) or "none"
        chosen, absent = ",".join(map(str, gpu_ids)), ", ".join(map(str, missing))
        raise MultiGpuRefused(f"gpu_ids {chosen}: GPU {absent} is not visible to sd-scripts' Python (visible: {seen})")
    return [visible[i] for i in gpu_ids]


def check_multi_gpu(gpu_ids: tuple[int, ...], preset: VramPreset, extra_args: list[str]) -> None:
    """Combinations sd-scripts cannot train across several GPUs."""
    if len(gpu_ids) < 2:
        return
    swap = preset.blocks_to_swap
    if "--blocks_to_swap" in extra_args:
        at = extra_args.index("--blocks_to_swap") + 1
        swap = int(extra_args[at]) if at < len(extra_args) and extra_args[at].isdigit() else swap
    if swap:
        raise MultiGpuRefused(
            f"the '{preset.name}' preset swaps {swap} FLUX blocks between CPU and GPU, and sd-scripts' block swapping "
            "does not work with several GPUs (its author: \"block swapping doesn't work well with multi-GPU "
            'training", '
            f"sd-scripts PR #1988): train on one GPU, or choose the '24' preset or larger if each of the "
            f"{len(gpu_ids)} cards has the memory"
        )
    if "--cpu_offload_checkpointing" in extra_args:
        raise MultiGpuRefused(
            "--cpu_offload_checkpointing does not work with several GPUs in sd-scripts: remove it or train on one GPU"
        )
