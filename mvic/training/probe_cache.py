"""Remember what the pre-launch probe found about an sd-scripts environment, so that each training
start does not pay again for a Python that imports torch, transformers and diffusers (~10 s on a small
machine) to learn what has not changed.

An answer is reused only while everything it depends on is as it was: the interpreter, its venv's
site-packages folders (pip adds or removes a dist-info folder for every install, upgrade or
uninstall, which changes the folder's mtime), the checkout's trainer files, the probe script itself,
the GPU selection variables and the boot (drivers and GPUs change across reboots). Where one of
these can't be read (no venv, no boot id), nothing is cached. Only answers without problems are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from ..files import TRAINERS_DIR, atomic_write_text, user_cache_dir

logger = logging.getLogger(__name__)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
GPU_SELECTION = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "SD_SCRIPTS_PYTHONPATH")


def _site_packages(python: str) -> list[Path]:
    venv = Path(python).absolute().parent.parent  # <venv>/bin/python, not resolved: it links to the base
    return sorted(venv.glob("lib*/python*/site-packages"))


def _stamp(path: Path) -> str:
    try:
        return f"{path}:{path.stat().st_mtime_ns}"
    except OSError:
        return f"{path}:absent"


def probe_key(python: str, checkout: Path, trainer_files: tuple[str, ...], mode: str) -> str | None:
    """The state the probe's answer depends on, hashed; None where it can't be pinned down."""
    site = _site_packages(python)
    if not site or not BOOT_ID.is_file():
        return None
    parts = [mode, python, str(Path(python).resolve()), BOOT_ID.read_text().strip()]
    parts += [_stamp(folder) for folder in site]
    parts += [_stamp(Path(checkout) / rel) for rel in trainer_files]
    parts += [f"{name}={os.environ.get(name, '')}" for name in GPU_SELECTION]
    overlay = os.environ.get("SD_SCRIPTS_PYTHONPATH", "")
    parts += [_stamp(Path(overlay))] if overlay else []
    parts.append(hashlib.sha256((TRAINERS_DIR / "probe_env.py").read_bytes()).hexdigest())
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:32]


def _path(key: str) -> Path:
    return user_cache_dir("probes") / f"{key}.json"


def load(key: str | None) -> dict | None:
    if key is None:
        return None
    try:
        return json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def store(key: str | None, probe: dict) -> None:
    if key is None:
        return
    try:
        atomic_write_text(_path(key), json.dumps(probe))
    except OSError as exc:  # a read-only home only costs the next start the probe
        logger.debug("probe cache not written: %s", exc)
