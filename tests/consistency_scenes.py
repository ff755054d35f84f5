"""New scenes for validating the consistency metric (not the embedded demo objects).

Each scene: one to three textured objects (spheres, boxes, cylinders) standing on a textured
ground plane under a sky, ray-cast in numpy like mvic/sources/sample.py, with procedural solid
textures (fBm noise, marble, stripes, checker, Voronoi spots) whose kind, colours, scale and seed
differ per scene. Cameras orbit the scene and look at it, so a set of views 60-90 degrees apart
is one scene seen from several angles.

    true sets      4 views of one scene, azimuth steps of 60-90 degrees
    mixed sets     4 views of 4 different scenes
    repeated sets  one view x4 with 1-3 px shifts, brightness jitter and noise
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from packload import mvic_module

sample_data = mvic_module("sources.sample")
TEXTURES = ("fbm", "marble", "stripes", "checker", "spots")


# --- procedural solid textures --------------------------------------------------------------


def _lattice(ix, iy, iz, seed: int) -> np.ndarray:
    """A reproducible pseudo-random value in [0, 1) per integer lattice point."""
    h = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).astype(np.float64) / 65536.0


def value_noise(points: np.ndarray, seed: int) -> np.ndarray:
    """Trilinear value noise with smoothstep, about 0..1."""
    base = np.floor(points)
    frac = points - base
    fade = frac * frac * (3 - 2 * frac)
    i = base.astype(np.int64)
    out = np.zeros(len(points))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                weight = (
                    np.where(dx, fade[:, 0], 1 - fade[:, 0])
                    * np.where(dy, fade[:, 1], 1 - fade[:, 1])
                    * np.where(dz, fade[:, 2], 1 - fade[:, 2])
                )
                out += weight * _lattice(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def fbm(points: np.ndarray, seed: int, octaves: int = 4) -> np.ndarray:
    total, amplitude, norm = np.zeros(len(points)), 1.0, 0.0
    for octave in range(octaves):
        total += amplitude * value_noise(points * (2.0**octave), seed + 101 * octave)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


@dataclass(frozen=True)
class Texture:
    kind: str
    scale: float
    colors: tuple  # three RGB triples in 0..1
    seed: int

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = points * self.scale
        a, b, c = (np.asarray(color) for color in self.colors)
        detail = fbm(p * 2.0, self.seed + 7, octaves=2)[:, None]
        if self.kind == "fbm":
            t = np.clip((fbm(p, self.seed)[:, None] - 0.25) * 2.0, 0, 1)
            mix = a * (1 - t) + b * t
        elif self.kind == "marble":
            t = 0.5 + 0.5 * np.sin(p[:, 0] * 3 + p[:, 1] * 2 + 6 * fbm(p, self.seed))[:, None]
            mix = a * (1 - t) + b * t
        elif self.kind == "stripes":
            t = (np.floor(p[:, 0] * 2 + p[:, 2] + 2 * fbm(p * 0.5, self.seed)) % 3)[:, None]
            mix = np.where(t == 0, a, np.where(t == 1, b, c))
        elif self.kind == "checker":
            warp = 0.6 * fbm(p * 0.7, self.seed)
            t = ((np.floor(p[:, 0] + warp) + np.floor(p[:, 1] + warp) + np.floor(p[:, 2] * 0.5)) % 2)[:, None]
            mix = a * (1 - t) + b * t
        else:  # Voronoi spots: cells coloured from a per-cell random value
            cell = np.floor(p)
            ints = cell.astype(np.int64)
            t = _lattice(ints[:, 0], ints[:, 1], ints[:, 2], self.seed)[:, None]
            mix = np.where(t < 0.33, a, np.where(t < 0.66, b, c))
        return np.clip(mix * (0.7 + 0.6 * detail), 0, 1)


def random_texture(rng: np.random.Generator, scale_range=(1.5, 4.0)) -> Texture:
    return Texture(
        kind=str(rng.choice(TEXTURES)),
        scale=float(rng.uniform(*scale_range)),
        colors=tuple(tuple(float(v) for v in rng.uniform(0.05, 0.95, 3)) for _ in range(3)),
        seed=int(rng.integers(1, 1 << 20)),
    )


# --- scenes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    shape: str  # "sphere", "box", "cylinder"
    center: tuple[float, float, float]
    size: tuple[float, float, float]  # radius (sphere), half extents (box), radius/-/half height (cylinder)
    texture: Texture


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    ground: Texture
    sky: tuple[float, float, float]
    light: tuple[float, float, float]


def random_scene(seed: int) -> Scene:
    rng = np.random.default_rng(seed)
    objects = []
    for index in range(int(rng.integers(1, 4))):
        shape = str(rng.choice(("sphere", "box", "cylinder")))
        offset = np.zeros(2) if index == 0 else rng.uniform(-1.1, 1.1, 2)
        if shape == "sphere":
            r = float(rng.uniform(0.45, 0.8))
            size, z = (r, r, r), r
        elif shape == "box":
            size = tuple(float(v) for v in rng.uniform(0.3, 0.7, 3))
            z = size[2]
        else:
            r, h = float(rng.uniform(0.3, 0.55)), float(rng.uniform(0.4, 0.8))
            size, z = (r, r, h), h
        center = (float(offset[0]), float(offset[1]), z)
        objects.append(SceneObject(shape, center, size, random_texture(rng, (2.0, 5.0))))
    light = rng.normal(size=3)
    light[2] = abs(light[2]) + 1.0
    ground = random_texture(rng, (0.8, 2.5))
    sky = tuple(rng.uniform(0.5, 0.9, 3))
    return Scene(tuple(objects), ground, sky, tuple(light / np.linalg.norm(light)))


def _hit_object(obj: SceneObject, origin: np.ndarray, dirs: np.ndarray):
    """Distance to the nearest hit (inf when missed) and unit normals."""
    o = origin - np.asarray(obj.center)
    n = len(dirs)
    t_hit, normals = np.full(n, np.inf), np.zeros((n, 3))
    if obj.shape == "sphere":
        r = obj.size[0]
        b = dirs @ o
        disc = b * b - (o @ o - r * r)
        t = -b - np.sqrt(np.maximum(disc, 0))
        hit = (disc > 0) & (t > 0)
        t_hit[hit] = t[hit]
        normals[hit] = (o + dirs[hit] * t[hit, None]) / r
    elif obj.shape == "box":
        half = np.asarray(obj.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - o) / dirs, (half - o) / dirs
        near, far = np.nanmax(np.minimum(t1, t2), axis=1), np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (near < far) & (near > 0)
        t_hit[hit] = near[hit]
        p = o + dirs[hit] * near[hit, None]
        axis = np.argmax(np.abs(p) / half, axis=1)
        normals[hit, axis] = np.sign(p[np.arange(len(p)), axis])
    else:
        r, h = obj.size[0], obj.size[2]
        a = dirs[:, 0] ** 2 + dirs[:, 1] ** 2
        b = o[0] * dirs[:, 0] + o[1] * dirs[:, 1]
        disc = b * b - a * (o[0] ** 2 + o[1] ** 2 - r * r)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-b - np.sqrt(np.maximum(disc, 0))) / a
            t_cap = (h - o[2]) / dirs[:, 2]  # cameras are above: only the top cap is visible
        side = (disc > 0) & (t_side > 0) & (np.abs(o[2] + t_side * dirs[:, 2]) <= h)
        p_cap = o + dirs * np.nan_to_num(t_cap)[:, None]
        cap = (t_cap > 0) & (p_cap[:, 0] ** 2 + p_cap[:, 1] ** 2 <= r * r)
        t_side, t_cap = np.where(side, t_side, np.inf), np.where(cap, t_cap, np.inf)
        t_hit = np.minimum(t_side, t_cap)
        p = o + dirs * np.where(np.isfinite(t_hit), t_hit, 0)[:, None]
        use_side = side & (t_side <= t_cap)
        normals[use_side, :2] = p[use_side, :2] / r
        normals[cap & ~use_side, 2] = 1.0
    return t_hit, normals


def render_scene(scene: Scene, pose, size: int = 384, focal: float | None = None) -> np.ndarray:
    """size x size x 3 uint8 view of `scene` from `pose` (a CameraPose)."""
    focal = focal or 1.1 * size
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    cam = np.stack([(xs + 0.5 - size / 2) / focal, (ys + 0.5 - size / 2) / focal, np.ones_like(xs)], axis=-1)
    cam = cam.reshape(-1, 3)
    dirs = cam @ pose.rotation
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = pose.center
    best, owner, normals = np.full(len(dirs), np.inf), np.full(len(dirs), -1), np.zeros((len(dirs), 3))
    for index, obj in enumerate(scene.objects):
        t, n = _hit_object(obj, origin, dirs)
        closer = t < best
        best[closer], owner[closer], normals[closer] = t[closer], index, n[closer]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = -origin[2] / dirs[:, 2]
    ground = (t_ground > 0) & (t_ground < best)
    sky = np.asarray(scene.sky) * (0.8 + 0.2 * np.clip(dirs[:, 2:3], 0, 1))
    color = np.broadcast_to(sky, (len(dirs), 3)).copy()
    light = np.asarray(scene.light)
    p = origin + dirs[ground] * t_ground[ground, None]
    p[:, 2] = 0.0  # exactly on the plane: floor() of a -1e-17 height would speckle the textures
    fog = np.exp(-np.maximum(t_ground[ground] - 6.0, 0) / 6.0)[:, None]  # far ground fades: no aliasing soup
    ground_color = scene.ground(p) * (0.45 + 0.55 * light[2])
    color[ground] = ground_color * fog + color[ground] * (1 - fog)
    for index, obj in enumerate(scene.objects):
        mine = (owner == index) & ~ground
        q = origin + dirs[mine] * best[mine, None]
        shade = 0.35 + 0.65 * np.clip(normals[mine] @ light, 0, 1)[:, None]
        color[mine] = obj.texture(q - np.asarray(obj.center)) * shade
    return (np.clip(color, 0, 1).reshape(size, size, 3) * 255 + 0.5).astype(np.uint8)


def orbit_pose(azimuth_deg: float, elevation_deg: float, radius: float, target=(0.0, 0.0, 0.4)):
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    target = np.asarray(target, dtype=float)
    center = target + radius * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    return sample_data.look_at_pose(center, target)


def true_set_poses(seed: int, views: int = 4, step_range=(60.0, 90.0)):
    """Poses of `views` cameras around a scene, consecutive azimuths 60-90 degrees apart."""
    rng = np.random.default_rng(seed + 5000)
    azimuth = float(rng.uniform(0, 360))
    poses = []
    for _ in range(views):
        poses.append(orbit_pose(azimuth, float(rng.uniform(18, 38)), float(rng.uniform(3.6, 4.4))))
        azimuth += float(rng.uniform(*step_range))
    return poses


def repeat_view(view: np.ndarray, copies: int, seed: int) -> list[np.ndarray]:
    """One view x copies: each shifted 1-3 px, brightness-jittered and noised (the first kept as is)."""
    rng = np.random.default_rng(seed)
    out = [view.copy()]
    for _ in range(copies - 1):
        dx, dy = (int(rng.integers(1, 4)) * int(rng.choice((-1, 1))) for _ in range(2))
        padded = np.pad(view.astype(np.float64), ((3, 3), (3, 3), (0, 0)), mode="edge")
        h, w = view.shape[:2]
        shifted = padded[3 - dy : 3 - dy + h, 3 - dx : 3 - dx + w]
        shifted = shifted * rng.uniform(0.88, 1.12) + rng.uniform(-8, 8) + rng.normal(0, 4.0, view.shape)
        out.append(np.clip(shifted + 0.5, 0, 255).astype(np.uint8))
    return out


# --- the validation sets, cached on disk ------------------------------------------------------


def _cache_dir() -> Path:
    """Renders depend only on this file: its hash names the cache folder (~/.cache/mvic-test-scenes)."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return Path(os.environ.get("MVIC_TEST_SCENES") or Path.home() / ".cache" / "mvic-test-scenes") / digest


def true_set(seed: int, size: int = 384, step_range=(60.0, 90.0)) -> tuple[list[np.ndarray], list]:
    """4 views of scene `seed`, 60-90 degrees apart (rendered once, then read from the cache), and their poses."""
    poses = true_set_poses(seed, step_range=step_range)
    path = _cache_dir() / f"scene{seed}-{size}-{step_range[0]:g}-{step_range[1]:g}.npy"
    if path.is_file():
        return list(np.load(path)), poses
    scene = random_scene(seed)
    views = [render_scene(scene, pose, size) for pose in poses]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, np.stack(views))
    os.replace(tmp, path)
    return views, poses


def mixed_set(true_sets: list[list[np.ndarray]], start: int) -> list[np.ndarray]:
    """View k of scene start + k: four views of four different scenes."""
    return [true_sets[(start + k) % len(true_sets)][k] for k in range(4)]
