"""The FLUX model files a run names (transformer, CLIP-L, T5-XXL, ae), shared by the trainer and the
headless sampler, and the safetensors header reader both use (no tensors are read)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FluxModelFiles:
    flux: Path
    clip_l: Path
    t5xxl: Path
    ae: Path


class ModelFileError(ValueError):
    pass


def safetensors_header(path: Path) -> dict:
    """The JSON header of a .safetensors file (no tensors are read)."""
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path}: file is empty or truncated")
        (length,) = struct.unpack("<Q", head)
        if length > 100_000_000 or length > path.stat().st_size:
            raise ModelFileError(f"{path}: not a safetensors file (bad header length)")
        try:
            return json.loads(handle.read(length))
        except ValueError:
            raise ModelFileError(f"{path}: not a safetensors file (header is not JSON)") from None
