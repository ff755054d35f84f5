"""Read sd-scripts' console output: tqdm step lines (`\r`-separated), the launcher's per-step loss
lines, the phases before training (model loading, latent and text-encoder caching), known failures."""

from __future__ import annotations

import re
from dataclasses import dataclass

# steps:  50%|█████     | 2/4 [00:11<00:11,  5.69s/it, avr_loss=1.39]
_STEP = re.compile(r"steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^\]]*)\]")
_RATE = re.compile(r"([\d.]+)\s*(s/it|it/s)")
_LOSS = re.compile(r"avr_loss=([-+\d.eE]+|nan|inf)")
_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|HIP out of memory", re.IGNORECASE)
_NO_DATA = re.compile(r"No data found", re.IGNORECASE)
# argparse's refusal, from sd-scripts' own parser: "flux_train_network.py: error: argument --x: ..."
_ARGS_REJECTED = re.compile(r"^\S+\.py: error: (.+)$")
# trainers/launch_sd_scripts.py: `MVIC_LOSS <step> <loss>` once per optimizer step (the step's own loss).
_STEP_LOSS = re.compile(r"MVIC_LOSS (\d+) ([-+\d.eE]+|nan|-?inf)\s*$")  # may follow a tqdm redraw (no newline)
STEP_LOSS_HOOK = "MVIC_LOSS_HOOK on"
# A bare tqdm bar (no description): sd-scripts' caching loops.
_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)")
_LOADING = re.compile(r"Loading state dict from\s*(\S+\.(?:safetensors|sft|pth?|bin))?")  # path: if not wrapped
_LOADED = re.compile(r"\bLoaded (Flux|CLIP-L|T5xxl|AE)\b")
MODELS_TO_LOAD = 4  # FLUX, CLIP-L, T5-XXL, AE
_PHASE_STARTS = (
    ("caching latents...", "caching latents"),
    ("checking cache validity...", "checking text-encoder caches"),
    ("caching Text Encoder outputs...", "caching text-encoder outputs"),
    ("cache Text Encoder outputs for sample prompt", "caching sample prompts"),
    ("generating sample images at step", "sampling previews"),  # its denoising bars, between training steps
)


@dataclass(frozen=True)
class StepProgress:
    step: int
    total: int
    loss: float | None
    seconds_per_step: float | None


@dataclass(frozen=True)
class PhaseProgress:
    """A phase before the training steps; done / total where sd-scripts counts them."""

    phase: str
    done: int | None = None
    total: int | None = None
    detail: str = ""

    def text(self) -> str:
        count = f" {self.done}/{self.total}" if self.total else ""
        return f"{self.phase}{count}" + (f" ({self.detail})" if self.detail else "")


class PhaseReader:
    """Follows the phases through the log lines (a bare tqdm bar counts for the phase it follows)."""

    def __init__(self) -> None:
        self.current: PhaseProgress | None = None
        self.models_loaded = 0

    def read(self, line: str) -> PhaseProgress | None:
        """The new phase state when `line` changes it, else None."""
        new = self._next(line)
        if new is None or new == self.current:
            return None
        self.current = new
        return new

    def _next(self, line: str) -> PhaseProgress | None:
        for marker, phase in _PHASE_STARTS:
            if marker in line:
                return PhaseProgress(phase)
        loading = _LOADING.search(line)
        if loading:
            name = re.split(r"[/\\]", loading.group(1) or "")[-1]
            return PhaseProgress("loading models", self.models_loaded, MODELS_TO_LOAD, name)
        if _LOADED.search(line):
            self.models_loaded += 1
            return PhaseProgress("loading models", min(self.models_loaded, MODELS_TO_LOAD), MODELS_TO_LOAD)
        bar = _BAR.match(line)
        if bar and self.current is not None and self.current.phase != "loading models":
            return PhaseProgress(self.current.phase, int(bar.group(1)), int(bar.group(2)))
        return None


def parse_step_loss(line: str) -> tuple[int, float] | None:
    """The launcher's `MVIC_LOSS <step> <loss>` line: (step within this launch, that step's loss)."""
    match = _STEP_LOSS.search(line.strip())
    return (int(match.group(1)), float(match.group(2))) if match else None


def split_console(buffer: str) -> tuple[list[str], str]:
    """Complete lines (tqdm redraws with `\r`, logging ends with `\n`) and the unfinished rest."""
    parts = re.split(r"\r\n|\r|\n", buffer)
    return [p for p in parts[:-1] if p.strip()], parts[-1]


def parse_step(line: str) -> StepProgress | None:
    match = _STEP.search(line)
    if not match:
        return None
    loss_match = _LOSS.search(line)
    rate_match = _RATE.search(match.group(3))
    seconds = None
    if rate_match:
        value = float(rate_match.group(1))
        seconds = value if rate_match.group(2) == "s/it" else (1.0 / value if value else None)
    loss = float(loss_match.group(1)) if loss_match else None
    return StepProgress(int(match.group(1)), int(match.group(2)), loss, seconds)


def is_out_of_memory(line: str) -> bool:
    return bool(_OOM.search(line))


def is_no_data(line: str) -> bool:
    return bool(_NO_DATA.search(line))


def args_rejection(line: str) -> str | None:
    """sd-scripts' parser's complaint about its arguments, or None."""
    match = _ARGS_REJECTED.match(line.strip())
    return match.group(1) if match else None
