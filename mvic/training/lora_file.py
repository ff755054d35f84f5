"""Finish a trained LoRA: add our metadata to its safetensors header and put it into
ComfyUI's loras folder atomically (a half-copied LoRA is never visible)."""
from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from pathlib import Path

from .model_files import safetensors_header

METADATA_PREFIX = "mvic_"


def read_metadata(path: Path | str) -> dict[str, str]:
    return safetensors_header(Path(path)).get("__metadata__", {}) or {}


def write_with_metadata(source: Path, target: Path, metadata: dict[str, str]) -> Path:
    """Copy `source` to `target` with `metadata` merged into the header (values are strings).

    Tensor offsets in safetensors are relative to the end of the header, so the
    data is copied byte for byte after a new header.
    """
    bad = [k for k in metadata if not k.startswith(METADATA_PREFIX)]
    if bad:
        raise ValueError(f"metadata keys must start with {METADATA_PREFIX!r}: {bad}")
    with open(source, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        merged = {**(header.get("__metadata__") or {}), **{k: str(v) for k, v in metadata.items()}}
        header["__metadata__"] = merged
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)  # keep the data 8-byte aligned
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(struct.pack("<Q", len(encoded)))
                out.write(encoded)
                shutil.copyfileobj(handle, out, 16 << 20)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target
