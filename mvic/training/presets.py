"""VRAM presets: the memory-saving switches a card of a given size needs.

Chosen from the card's total memory in GiB *as torch reports it*: an "80 GB" H100
reports ~79.6 GiB and a "24 GB" card ~23.6 GiB, so thresholds sit below the
marketing numbers. Peaks measured on the GPU machine are in BENCHMARKS.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VramPreset:
    name: str
    min_gib: float  # chosen automatically when the card has at least this much
    fp8_base: bool = False
    gradient_checkpointing: bool = False
    blocks_to_swap: int = 0
    optimizer: str = "AdamW"
    mixed_precision: str = "bf16"
    fp8_t5: bool = False  # T5-XXL in e4m3 while caching its outputs: ~4.5 GiB instead of ~9 (launcher --fp8-t5)
    extra: tuple[str, ...] = ()

    def arguments(self) -> list[str]:
        args = ["--mixed_precision", self.mixed_precision, "--save_precision", self.mixed_precision]
        args += ["--optimizer_type", self.optimizer]
        if self.fp8_base:
            args.append("--fp8_base")
        if self.gradient_checkpointing:
            args.append("--gradient_checkpointing")
        if self.blocks_to_swap:
            args += ["--blocks_to_swap", str(self.blocks_to_swap)]
        return args + list(self.extra)

    @property
    def needs_bitsandbytes(self) -> bool:
        return "8bit" in self.optimizer.lower()


# Largest first: the first preset the card can hold wins.
PRESETS: dict[str, VramPreset] = {
    "80": VramPreset("80", 70.0),
    "48": VramPreset("48", 40.0, gradient_checkpointing=True),
    "24": VramPreset("24", 20.0, fp8_base=True, gradient_checkpointing=True),
    "16": VramPreset("16", 14.0, fp8_base=True, gradient_checkpointing=True, blocks_to_swap=8),
    # 16 swapped blocks peaked at 11.52 GiB on an H200 (BENCHMARKS.md); 18 for the 11.5 GiB goal.
    # Both peaked while caching T5-XXL outputs with T5 in 16 bits (10.2 GiB): fp8_t5 halves that phase.
    "12": VramPreset(
        "12", 10.0, fp8_base=True, gradient_checkpointing=True, blocks_to_swap=18, optimizer="AdamW8bit", fp8_t5=True
    ),
    # 35 = the most sd-scripts swaps (17 of 19 double, 36 of 38 single blocks): ~2 GiB of weights
    # fewer on the GPU than 28, which an 8 GiB card needs (BENCHMARKS.md, memory cap).
    "8": VramPreset(
        "8", 0.0, fp8_base=True, gradient_checkpointing=True, blocks_to_swap=35, optimizer="AdamW8bit", fp8_t5=True
    ),
}
# No GPU (tests and tiny models only). bf16 still: in fp32 the T5-XXL alone needs 19 GB of RAM.
# Weights stay memory-mapped (sd-scripts' default): the T5-XXL is read from the page cache, which
# the kernel can reclaim, so a CPU run holds ~1.3 GB of its own and starts ~40 s sooner than with
# --disable_mmap_load_safetensors, which copies 9.5 GB in (measured on the 2-core test machine).
# The AE runs in fp32 (--no_half_vae, +170 MB): a CPU without native bf16 (AVX2 only, e.g. AMD Zen 3)
# runs bf16 convolutions ~50x slower than fp32, and caching one 256 px latent took over 10 minutes.
# Captions are encoded 8 at a time: on a CPU a T5-XXL pass over a few short captions costs what one does
# (reading its 9.5 GB of weights dominates: ~35-70 s a pass on the 2-core test machine).
CPU_PRESET = VramPreset("cpu", 0.0, extra=("--no_half_vae", "--text_encoder_batch_size", "8"))
PRESET_CHOICES = ("auto", *PRESETS, "cpu")


def preset_for_gib(total_gib: float) -> VramPreset:
    for preset in PRESETS.values():
        if total_gib >= preset.min_gib:
            return preset
    return PRESETS["8"]


def next_lower(preset: VramPreset) -> VramPreset | None:
    names = list(PRESETS)
    if preset.name not in names or preset.name == names[-1]:
        return None
    return PRESETS[names[names.index(preset.name) + 1]]


def resolve_preset(choice: str, gpu_total_gib: float | None) -> VramPreset:
    """'auto' -> from the GPU's memory (CPU preset without a GPU); else the named one."""
    if choice not in PRESET_CHOICES:
        raise ValueError(f"VRAM preset {choice!r}: choose one of {', '.join(PRESET_CHOICES)}")
    if choice == "cpu":
        return CPU_PRESET
    if choice != "auto":
        return PRESETS[choice]
    return CPU_PRESET if gpu_total_gib is None else preset_for_gib(gpu_total_gib)
