"""Read sd-scripts' console output: tqdm step lines (`\r`-separated), loss, known failures."""
from __future__ import annotations

import re
from dataclasses import dataclass

# steps:  50%|█████     | 2/4 [00:11<00:11,  5.69s/it, avr_loss=1.39]
_STEP = re.compile(r"steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^\]]*)\]")
_RATE = re.compile(r"([\d.]+)\s*(s/it|it/s)")
_LOSS = re.compile(r"avr_loss=([-+\d.eE]+|nan|inf)")
_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|HIP out of memory", re.IGNORECASE)
_NO_DATA = re.compile(r"No data found", re.IGNORECASE)


@dataclass(frozen=True)
class StepProgress:
    step: int
    total: int
    loss: float | None
    seconds_per_step: float | None


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
