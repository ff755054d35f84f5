"""Our own reader (and writer, for sample data and tests) of COLMAP's binary model files.

Only what view selection needs: per image its name and pose; cameras are read to
validate the file. Any inconsistency raises `ColmapError` so callers can fall back
to frame order instead of trusting half a file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from ..datatypes import CameraPose

# model id -> number of intrinsic parameters (COLMAP's src/colmap/sensor/models.h)
CAMERA_MODEL_PARAMS = {0: 3, 1: 4, 2: 4, 3: 5, 4: 8, 5: 8, 6: 12, 7: 5, 8: 4, 9: 5, 10: 12, 11: 16}


class ColmapError(ValueError):
    pass


@dataclass(frozen=True)
class ColmapCamera:
    camera_id: int
    model_id: int
    width: int
    height: int
    params: tuple[float, ...]


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.offset = 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            raise ColmapError(f"{self.path}: truncated at byte {self.offset}")
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return values

    def cstring(self) -> str:
        end = self.data.find(b"\x00", self.offset)
        if end < 0:
            raise ColmapError(f"{self.path}: unterminated image name at byte {self.offset}")
        raw = self.data[self.offset : end]
        self.offset = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ColmapError(f"{self.path}: image name is not UTF-8 at byte {self.offset}") from None

    def finish(self):
        if self.offset != len(self.data):
            raise ColmapError(f"{self.path}: {len(self.data) - self.offset} unexpected trailing bytes")


def read_cameras_bin(path: str | Path) -> dict[int, ColmapCamera]:
    reader = _Reader(Path(path))
    (count,) = reader.take("<Q")
    cameras = {}
    for _ in range(count):
        camera_id, model_id, width, height = reader.take("<iiQQ")
        if model_id not in CAMERA_MODEL_PARAMS:
            raise ColmapError(f"{path}: unknown camera model id {model_id}")
        params = reader.take("<" + "d" * CAMERA_MODEL_PARAMS[model_id])
        cameras[camera_id] = ColmapCamera(camera_id, model_id, width, height, params)
    reader.finish()
    return cameras


def read_images_bin(path: str | Path) -> dict[str, CameraPose]:
    """Image name -> pose."""
    reader = _Reader(Path(path))
    (count,) = reader.take("<Q")
    poses = {}
    for _ in range(count):
        values = reader.take("<idddddddi")
        qvec, tvec = values[1:5], values[5:8]
        name = reader.cstring()
        (num_points,) = reader.take("<Q")
        if num_points > (len(reader.data) - reader.offset) // 24:
            raise ColmapError(f"{path}: image {name!r} claims {num_points} points, more than the file holds")
        reader.offset += 24 * num_points  # x, y (double) + point3D id (int64); unused
        if sum(q * q for q in qvec) < 1e-12:
            raise ColmapError(f"{path}: image {name!r} has a zero rotation quaternion")
        poses[name] = CameraPose(qvec=tuple(qvec), tvec=tuple(tvec))
    reader.finish()
    return poses


def read_model(sparse_dir: str | Path) -> dict[str, CameraPose]:
    """Poses from `<sparse_dir>/{cameras,images}.bin`, keyed by image name."""
    sparse_dir = Path(sparse_dir)
    cameras = read_cameras_bin(sparse_dir / "cameras.bin")
    if not cameras:
        raise ColmapError(f"{sparse_dir / 'cameras.bin'}: no cameras")
    return read_images_bin(sparse_dir / "images.bin")


def write_cameras_bin(path: str | Path, cameras: list[ColmapCamera]) -> None:
    out = [struct.pack("<Q", len(cameras))]
    for cam in cameras:
        out.append(struct.pack("<iiQQ", cam.camera_id, cam.model_id, cam.width, cam.height))
        out.append(struct.pack("<" + "d" * len(cam.params), *cam.params))
    Path(path).write_bytes(b"".join(out))


def write_images_bin(path: str | Path, images: list[tuple[int, str, CameraPose, int]]) -> None:
    """images: (image_id, name, pose, camera_id); written with no 2D points."""
    out = [struct.pack("<Q", len(images))]
    for image_id, name, pose, camera_id in images:
        out.append(struct.pack("<idddddddi", image_id, *pose.qvec, *pose.tvec, camera_id))
        out.append(name.encode("utf-8") + b"\x00")
        out.append(struct.pack("<Q", 0))
    Path(path).write_bytes(b"".join(out))
