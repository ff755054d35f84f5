"""Helpers every source shares: natural sort, image listing, safe names."""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from ..images import IMAGE_SUFFIXES

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str):
    """'frame2' < 'frame10' (what a person expects from numbered frames)."""
    return [int(part) if part.isdigit() else part.casefold() for part in _DIGITS.split(text)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, natural-sorted; other files are ignored."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )


def list_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: natural_key(p.name))


def safe_name(name: str, fallback: str = "set") -> str:
    """A file-name-safe version of a set name: no separators, no leading dots, no '..'."""
    text = unicodedata.normalize("NFKC", name)
    text = re.sub(r"[^\w.-]+", "_", text, flags=re.UNICODE)
    text = re.sub(r"\.{2,}", "_", text).strip("._")
    return text[:80] or fallback


def require_dir(path: str | Path, what: str) -> Path:
    if not str(path).strip():
        raise ValueError(f"{what} is empty: give the folder that holds your multi-view sets")
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"{what} {folder} does not exist: check the path (absolute, or relative to ComfyUI's input folder)")
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} {folder} is a file, not a folder of sets")
    return folder
