"""Embedded sample data: textured objects ray-cast from known cameras, written in the
MVImgNet layout with COLMAP binaries, so the whole pipeline runs with nothing
downloaded. Deterministic: the same bytes on every machine with the same Pillow.

The captures imitate a phone orbit: uneven angular speed (the operator lingers),
a height change half-way, and one frame COLMAP did not register.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..datatypes import CameraPose
from .colmap import ColmapCamera, write_cameras_bin, write_images_bin
from .mvimgnet import CATEGORY_FILE

SAMPLE_VERSION = "v1"
WIDTH, HEIGHT, FOCAL = 256, 320, 300.0
FRAMES_PER_SET = 24
_DONE = ".complete"


@dataclass(frozen=True)
class SampleObject:
    class_id: str
    category: str
    instance: str
    shape: str  # "sphere", "box", "can"
    color: tuple[float, float, float]
    accent: tuple[float, float, float]


SAMPLE_OBJECTS = (
    SampleObject("7", "ball", "a1", "sphere", (0.85, 0.25, 0.2), (0.95, 0.9, 0.3)),
    SampleObject("7", "ball", "b2", "sphere", (0.2, 0.45, 0.85), (0.95, 0.95, 0.95)),
    SampleObject("23", "box", "c3", "box", (0.3, 0.7, 0.35), (0.95, 0.6, 0.1)),
    SampleObject("23", "box", "d4", "box", (0.6, 0.35, 0.75), (0.2, 0.2, 0.2)),
    SampleObject("101", "can", "e5", "can", (0.9, 0.75, 0.2), (0.15, 0.3, 0.7)),
    SampleObject("101", "can", "f6", "can", (0.75, 0.75, 0.8), (0.8, 0.1, 0.15)),
)


def look_at_pose(center: np.ndarray, target=np.zeros(3), up=np.array([0.0, 0.0, 1.0])) -> CameraPose:
    forward = target - center
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])  # world -> camera rows
    return CameraPose(
        qvec=tuple(float(v) for v in rotation_to_qvec(rotation)), tvec=tuple(float(v) for v in -rotation @ center)
    )


def rotation_to_qvec(r: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (w, x, y, z), w >= 0."""
    trace = np.trace(r)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k])
        q = [0.0] * 4
        q[0] = (r[k, j] - r[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (r[j, i] + r[i, j]) / s
        q[1 + k] = (r[k, i] + r[i, k]) / s
    q = np.array(q)
    return q if q[0] >= 0 else -q


def orbit_centers(count: int, seed: int) -> np.ndarray:
    """Camera centres of an uneven phone orbit (lingers, changes height, jitters)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, count)
    azimuth = 2 * np.pi * (t + 0.12 * np.sin(2 * np.pi * t))  # slower, then faster
    height = np.where(t < 0.5, 0.5, 1.6) + rng.normal(0, 0.05, count)
    radius = 3.2 + rng.normal(0, 0.05, count)
    return np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth), height], axis=1)


def _shade(obj: SampleObject, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    base, accent = np.array(obj.color), np.array(obj.accent)
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    angle = np.arctan2(y, x)
    if obj.shape == "sphere":
        pattern = ((np.floor(angle / (np.pi / 4)) + np.floor((z + 1) * 3)) % 2)[:, None]
        front_spot = (np.linalg.norm(points - np.array([0.95, 0, 0.3]), axis=1) < 0.35)[:, None]
        albedo = np.where(front_spot, np.array([0.1, 0.1, 0.1]), base * (0.7 + 0.3 * pattern))
    elif obj.shape == "box":
        face = np.argmax(np.abs(normals) * 3 + (normals > 0), axis=1)
        tints = np.array([[1, 1, 1], [0.75, 0.75, 0.75], [1, 0.85, 0.85], [0.85, 0.85, 1], [1, 1, 0.8], [0.8, 1, 0.8]])
        stripe = (np.abs(z - 0.1) < 0.12)[:, None]
        albedo = np.where(stripe, accent, base * tints[face])
    else:
        label = ((z > -0.35) & (z < 0.35))[:, None]
        stripes = ((np.floor(angle / (np.pi / 6))) % 2)[:, None]
        albedo = np.where(label, accent * (0.6 + 0.4 * stripes), base)
    light = np.array([0.4, -0.5, 0.75])
    light /= np.linalg.norm(light)
    lambert = np.clip(normals @ light, 0, 1)[:, None]
    return albedo * (0.35 + 0.65 * lambert)


def _intersect(obj: SampleObject, origin: np.ndarray, dirs: np.ndarray):
    """Nearest hit distance (inf for misses) and normals, for all rays at once."""
    n = dirs.shape[0]
    t_hit = np.full(n, np.inf)
    normals = np.zeros((n, 3))
    if obj.shape == "sphere":
        b = dirs @ origin
        c = origin @ origin - 1.0
        disc = b * b - c
        ok = disc > 0
        t = -b - np.sqrt(np.where(ok, disc, 0))
        hit = ok & (t > 0)
        t_hit[hit] = t[hit]
        normals[hit] = origin + dirs[hit] * t[hit, None]
    elif obj.shape == "box":
        half = np.array([0.8, 0.6, 0.7])
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - origin) / dirs
            t2 = (half - origin) / dirs
        near = np.nanmax(np.minimum(t1, t2), axis=1)
        far = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (near < far) & (near > 0)
        t_hit[hit] = near[hit]
        p = origin + dirs[hit] * near[hit, None]
        axis = np.argmax(np.abs(p) / half, axis=1)
        normals[hit, axis] = np.sign(p[np.arange(len(p)), axis])
    else:  # capped cylinder radius 0.7, |z| <= 0.9
        r, h = 0.7, 0.9
        a = dirs[:, 0] ** 2 + dirs[:, 1] ** 2
        b = origin[0] * dirs[:, 0] + origin[1] * dirs[:, 1]
        c = origin[0] ** 2 + origin[1] ** 2 - r * r
        disc = b * b - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-b - np.sqrt(np.where(disc > 0, disc, 0))) / a
        z_side = origin[2] + t_side * dirs[:, 2]
        side = (disc > 0) & (t_side > 0) & (np.abs(z_side) <= h)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cap = (np.sign(origin[2]) * h - origin[2]) / dirs[:, 2]
        p_cap = origin + dirs * np.nan_to_num(t_cap)[:, None]
        cap = (t_cap > 0) & (p_cap[:, 0] ** 2 + p_cap[:, 1] ** 2 <= r * r)
        t_side = np.where(side, t_side, np.inf)
        t_cap = np.where(cap, t_cap, np.inf)
        t_hit = np.minimum(t_side, t_cap)
        p = origin + dirs * np.where(np.isfinite(t_hit), t_hit, 0)[:, None]
        use_side = side & (t_side <= t_cap)
        normals[use_side, :2] = p[use_side, :2] / r
        use_cap = cap & ~use_side
        normals[use_cap, 2] = np.sign(origin[2])
    return t_hit, normals


def render(obj: SampleObject, pose: CameraPose) -> np.ndarray:
    """H x W x 3 uint8 view of `obj` (on a checker floor) from `pose`."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    cam_dirs = np.stack(
        [(xs + 0.5 - WIDTH / 2) / FOCAL, (ys + 0.5 - HEIGHT / 2) / FOCAL, np.ones_like(xs)], axis=-1
    ).reshape(-1, 3)
    dirs = cam_dirs @ pose.rotation  # camera -> world (R^T applied to row vectors)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = pose.center
    t_obj, normals = _intersect(obj, origin, dirs)
    floor_z = -1.0 if obj.shape == "sphere" else (-0.7 if obj.shape == "box" else -0.9)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = (floor_z - origin[2]) / dirs[:, 2]
    t_floor = np.where(t_floor > 0, t_floor, np.inf)
    sky = 0.55 + 0.35 * np.clip(dirs[:, 2:3], -1, 1) * np.array([0.6, 0.7, 1.0])
    color = np.broadcast_to(sky, (dirs.shape[0], 3)).copy()
    floor = np.isfinite(t_floor) & (t_floor < t_obj)
    p = origin + dirs[floor] * t_floor[floor, None]
    checker = (np.floor(p[:, 0] * 1.5) + np.floor(p[:, 1] * 1.5)) % 2
    shadow = np.clip(np.hypot(p[:, 0], p[:, 1]) / 1.2, 0.55, 1.0)
    color[floor] = (0.55 + 0.25 * checker)[:, None] * np.array([0.9, 0.88, 0.82]) * shadow[:, None]
    hit = np.isfinite(t_obj)
    points = origin + dirs[hit] * t_obj[hit, None]
    color[hit] = _shade(obj, points, normals[hit])
    return (np.clip(color, 0, 1).reshape(HEIGHT, WIDTH, 3) * 255 + 0.5).astype(np.uint8)


def default_sample_root() -> Path:
    return Path(tempfile.gettempdir()) / f"mvic-sample-{SAMPLE_VERSION}"


def write_sample_data(root: Path) -> Path:
    """Render every sample object into `root` (MVImgNet layout). Returns root."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    classes = sorted({(o.class_id, o.category) for o in SAMPLE_OBJECTS}, key=lambda c: int(c[0]))
    (root / CATEGORY_FILE).write_bytes("".join(f"{cid},{name}\r\n" for cid, name in classes).encode())
    for number, obj in enumerate(SAMPLE_OBJECTS):
        instance = root / obj.class_id / obj.instance
        (instance / "images").mkdir(parents=True, exist_ok=True)
        (instance / "sparse" / "0").mkdir(parents=True, exist_ok=True)
        registered = []
        for index, center in enumerate(orbit_centers(FRAMES_PER_SET, seed=number)):
            pose = look_at_pose(center)
            name = f"{index + 1:03d}.jpg"
            Image.fromarray(render(obj, pose)).save(instance / "images" / name, quality=92)
            if index != 5:  # like COLMAP, leave one frame unregistered
                registered.append((index + 1, name, pose, 1))
        camera = ColmapCamera(1, 1, WIDTH, HEIGHT, (FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2))
        write_cameras_bin(instance / "sparse" / "0" / "cameras.bin", [camera])
        write_images_bin(instance / "sparse" / "0" / "images.bin", registered)
    return root


def ensure_sample_data(root: Path | None = None) -> Path:
    """The sample data, rendered on first use (about a second) and reused after."""
    root = root or default_sample_root()
    if (root / _DONE).exists():
        return root
    staging = Path(tempfile.mkdtemp(prefix=".mvic-sample-", dir=root.parent if root.parent.exists() else None))
    try:
        write_sample_data(staging)
        (staging / _DONE).write_text(SAMPLE_VERSION)
        if root.exists():
            shutil.rmtree(root)
        staging.rename(root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
