"""The LoRA metadata codec (`mvic_*` keys in the safetensors header): `iclora_metadata` encodes
the layout, markers and trigger, written when a trained LoRA is put into ComfyUI's loras folder
(atomically: a half-copied LoRA is never visible); `iclora_info` reads them back, validated, for
the samplers. A LoRA may come from anyone, so nothing it says is used
before it is checked: bounded layout, well-formed markers, errors that name the file and field."""

from __future__ import annotations

import json
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from .files import atomic_write
from .flux_files import safetensors_header

METADATA_PREFIX = "mvic_"
# sd-scripts' keys we correct: it writes its --resolution (unset for us: 1024x1024), not the composites' size.
REPLACED_KEYS = frozenset({"modelspec.resolution"})
MAX_PANELS = 64  # rows x cols
MAX_PANEL_SIDE = 4096
MAX_COMPOSITE_PIXELS = 16 * 1024 * 1024
PANEL_ALIGN = 16
MAX_TRIGGER_CHARS = 500
LAYOUT_KEYS = ("rows", "cols", "panel_width", "panel_height")
_MARKER = re.compile(r"^\[[A-Z0-9][A-Z0-9_-]{0,62}\]$")


class LoraMetadataError(ValueError):
    """A LoRA's metadata is malformed or out of bounds; the message names the file and the field."""


@dataclass(frozen=True)
class IcLoraInfo:
    """What our trainer wrote into a LoRA, validated. Every part is optional."""

    layout: tuple[int, int, int, int] | None = None  # rows, cols, panel_width, panel_height
    markers: tuple[str, tuple[str, ...]] | None = None  # prefix, panel markers in reading order
    trigger: str = ""


def iclora_metadata(info: IcLoraInfo) -> dict[str, str]:
    """The header entries for `info`, as `iclora_info` reads them back. The trigger is written with
    the markers (a LoRA trained without markers claims neither); one too long to check is left out."""
    metadata = {}
    if info.layout is not None:
        metadata["mvic_layout"] = json.dumps(dict(zip(LAYOUT_KEYS, info.layout)))
    if info.markers is not None:
        metadata["mvic_markers"] = json.dumps({"prefix": info.markers[0], "panels": list(info.markers[1])})
        trigger = " ".join(info.trigger.split())
        metadata["mvic_trigger"] = trigger if len(trigger) <= MAX_TRIGGER_CHARS else ""
    return metadata


def read_metadata(path: Path | str) -> dict[str, str]:
    """The header's `__metadata__` (strings to strings, as safetensors defines it)."""
    metadata = safetensors_header(Path(path)).get("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise LoraMetadataError(f"LoRA {path}: __metadata__ is not a table of strings")
    return metadata


def check_layout_bounds(rows: int, cols: int, panel_width: int, panel_height: int, where: str) -> None:
    """rows x cols <= 64, panel sides multiples of 16 up to 4096, composite <= 16 MP."""
    if rows < 1 or cols < 1 or rows * cols > MAX_PANELS:
        raise LoraMetadataError(
            f"{where}: {rows}x{cols} panels; rows and cols must be at least 1 and rows x cols at most {MAX_PANELS}"
        )
    for name, side in (("panel_width", panel_width), ("panel_height", panel_height)):
        if side < PANEL_ALIGN or side % PANEL_ALIGN or side > MAX_PANEL_SIDE:
            raise LoraMetadataError(
                f"{where}.{name} = {side}: must be a multiple of {PANEL_ALIGN} "
                f"between {PANEL_ALIGN} and {MAX_PANEL_SIDE}"
            )
    pixels = rows * cols * panel_width * panel_height
    if pixels > MAX_COMPOSITE_PIXELS:
        size = f"{cols * panel_width}x{rows * panel_height}"
        raise LoraMetadataError(
            f"{where}: a {size} composite is {pixels / 2**20:.1f} MP; at most {MAX_COMPOSITE_PIXELS // 2**20} MP"
        )


def iclora_info(metadata: dict[str, str], source: str) -> IcLoraInfo:
    """Parse and check mvic_layout / mvic_markers / mvic_trigger; errors name `source` and the field."""
    layout = markers = None
    if metadata.get("mvic_layout"):
        raw = _json(metadata["mvic_layout"], source, "mvic_layout")
        values = []
        for key in LAYOUT_KEYS:
            value = raw.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise LoraMetadataError(f"LoRA {source}: mvic_layout.{key} is {value!r}, not a whole number")
            values.append(value)
        check_layout_bounds(*values, where=f"LoRA {source}: mvic_layout")
        layout = tuple(values)
    if metadata.get("mvic_markers"):
        markers = _markers(_json(metadata["mvic_markers"], source, "mvic_markers"), source, layout)
    trigger = metadata.get("mvic_trigger", "")
    if len(trigger) > MAX_TRIGGER_CHARS or any(ord(c) < 32 for c in trigger):
        raise LoraMetadataError(
            f"LoRA {source}: mvic_trigger must be one line of at most {MAX_TRIGGER_CHARS} characters"
        )
    return IcLoraInfo(layout, markers, trigger)


def read_iclora_info(path: Path | str) -> IcLoraInfo:
    return iclora_info(read_metadata(path), str(path))


def _json(text: str, source: str, field: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise LoraMetadataError(f"LoRA {source}: {field} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise LoraMetadataError(f"LoRA {source}: {field} must be a JSON object")
    return value


def _markers(raw: dict, source: str, layout) -> tuple[str, tuple[str, ...]]:
    prefix, panels = raw.get("prefix"), raw.get("panels")
    if not isinstance(prefix, str) or not _MARKER.match(prefix):
        raise LoraMetadataError(
            f"LoRA {source}: mvic_markers.prefix {str(prefix)[:80]!r} is not a marker like [FOUR-VIEWS]"
        )
    if not isinstance(panels, list) or not 1 <= len(panels) <= MAX_PANELS:
        raise LoraMetadataError(f"LoRA {source}: mvic_markers.panels must be a list of 1 to {MAX_PANELS} markers")
    bad = [p for p in panels if not isinstance(p, str) or not _MARKER.match(p)]
    if bad:
        raise LoraMetadataError(
            f"LoRA {source}: mvic_markers.panels holds {str(bad[0])[:80]!r}, not a marker like [TOP-LEFT]"
        )
    if layout is not None and len(panels) != layout[0] * layout[1]:
        raise LoraMetadataError(
            f"LoRA {source}: mvic_markers.panels has {len(panels)} markers for {layout[0]}x{layout[1]} panels"
        )
    return prefix, tuple(panels)


def write_with_metadata(
    source: Path, target: Path, metadata: dict[str, str], replaced: dict[str, str] | None = None
) -> Path:
    """Copy `source` to `target` with `metadata` merged into the header (values are strings);
    `replaced`: sd-scripts' own keys we correct (REPLACED_KEYS).

    Tensor offsets in safetensors are relative to the end of the header, so the
    data is copied byte for byte after a new header.
    """
    bad = [k for k in metadata if not k.startswith(METADATA_PREFIX)]
    if bad:
        raise ValueError(f"metadata keys must start with {METADATA_PREFIX!r}: {bad}")
    replaced = replaced or {}
    if set(replaced) - REPLACED_KEYS:
        raise ValueError(f"only {sorted(REPLACED_KEYS)} of sd-scripts' metadata are replaced: {sorted(replaced)}")
    with open(source, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        merged = {**(header.get("__metadata__") or {}), **{k: str(v) for k, v in {**metadata, **replaced}.items()}}
        header["__metadata__"] = merged
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)  # keep the data 8-byte aligned

        def write(out) -> None:
            out.write(struct.pack("<Q", len(encoded)))
            out.write(encoded)
            shutil.copyfileobj(handle, out, 16 << 20)

        atomic_write(target, write)
    return target
