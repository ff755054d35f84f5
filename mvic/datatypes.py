"""The data that crosses pipeline stages (and ComfyUI links as MV_SETS / MV_COMPOSITES).

Provenance (set, frame, pose, category) travels here, never inside IMAGE tensors,
so the captioner and the dataset saver can see it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .layout import CompositeLayout
from .markers import LayoutMarkers


@dataclass(frozen=True)
class CameraPose:
    """A COLMAP image pose: world -> camera rotation (quaternion w, x, y, z) and translation."""

    qvec: tuple[float, float, float, float]
    tvec: tuple[float, float, float]

    @property
    def rotation(self) -> np.ndarray:
        w, x, y, z = self.qvec
        n = (w * w + x * x + y * y + z * z) ** 0.5
        w, x, y, z = w / n, x / n, y / n, z / n
        return np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
            ]
        )

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates."""
        return -self.rotation.T @ np.asarray(self.tvec, dtype=float)

    @property
    def forward(self) -> np.ndarray:
        """Optical axis (camera +z) in world coordinates."""
        return self.rotation.T @ np.array([0.0, 0.0, 1.0])

    @property
    def down(self) -> np.ndarray:
        """Image 'down' (camera +y) in world coordinates."""
        return self.rotation.T @ np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class Frame:
    path: Path
    pose: CameraPose | None = None


@dataclass(frozen=True)
class ViewAngle:
    """Where a chosen view looks from, relative to the set's first chosen view."""

    azimuth_deg: float  # around the object's up axis, positive = camera moved to the object's left
    elevation_deg: float  # above the object's horizon


@dataclass
class MultiViewSet:
    name: str  # unique, human-readable (e.g. "bag/0a1b2c")
    category: str
    frames: list[Frame]
    source: str  # "folder", "mvimgnet", "video", "sample"
    chosen: list[int] = field(default_factory=list)  # indices into frames, in panel order
    angles: list[ViewAngle] | None = None  # per chosen view, when poses are known
    selection: str = ""  # how `chosen` was picked
    warnings: list[str] = field(default_factory=list)  # problems that did not stop the set
    caption: str | None = None  # a finished composite's own caption (source "composites"), kept word for word

    @property
    def has_poses(self) -> bool:
        return any(frame.pose is not None for frame in self.frames)

    @property
    def chosen_frames(self) -> list[Frame]:
        return [self.frames[i] for i in self.chosen]


@dataclass(frozen=True)
class SkippedInput:
    """Something we did not use, and why (shown in reports instead of failing the run)."""

    name: str
    reason: str


@dataclass
class MultiViewSets:
    """The MV_SETS type: the loaded sets plus what was skipped on the way."""

    sets: list[MultiViewSet]
    skipped: list[SkippedInput] = field(default_factory=list)
    root: str = ""

    def report(self) -> str:
        lines = [f"{len(self.sets)} set(s) loaded from {self.root or 'input'}"]
        lines += [f"warning {s.name}: {w}" for s in self.sets for w in s.warnings]
        lines += [f"skipped {item.name}: {item.reason}" for item in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class PanelSource:
    """Where one panel of a composite came from."""

    set_name: str
    category: str
    frame_path: str
    frame_index: int
    pose: CameraPose | None = None
    angle: ViewAngle | None = None


IMPORTED = "imported"  # Caption.backend of a caption that came with the data (finished composites)


@dataclass(frozen=True)
class Caption:
    text: str
    backend: str  # "template", "gemini", "openai-compatible", "manual", "imported"
    model: str = ""
    prompt_version: str = ""

    @property
    def came_with_data(self) -> bool:
        return self.backend == IMPORTED


@dataclass
class Composite:
    set_name: str
    category: str
    layout: CompositeLayout
    markers: LayoutMarkers
    image: np.ndarray  # H x W x 3 uint8
    panels: list[PanelSource]
    fit: str = "crop"
    caption: Caption | None = None

    def with_caption(self, caption: Caption) -> "Composite":
        return replace(self, caption=caption)


@dataclass
class Composites:
    """The MV_COMPOSITES type: composites plus what was skipped on the way."""

    items: list[Composite]
    skipped: list[SkippedInput] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what a stage wants the person to know (how it imported…)

    def report(self) -> str:
        lines = [f"{len(self.items)} composite(s)", *self.notes]
        lines += [f"skipped {item.name}: {item.reason}" for item in self.skipped]
        return "\n".join(lines)
