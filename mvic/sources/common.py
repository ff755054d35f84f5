"""Helpers every source shares: natural sort, image listing, UTF-8 names."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..images import IMAGE_SUFFIXES

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str):
    """'frame2' < 'frame10' (what a person expects from numbered frames)."""
    return [int(part) if part.isdigit() else part.casefold() for part in _DIGITS.split(text)]


def is_utf8(text: str) -> bool:
    """False for a name the file system gave us as bytes that are not UTF-8 (Python keeps them
    as lone surrogates, which no UTF-8 file -- manifest, caption, TOML -- can hold)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str | Path) -> str:
    """A path as UTF-8 text: bytes that are not UTF-8 shown as \\xNN escapes."""
    text = str(path)
    return text if is_utf8(text) else os.fsencode(text).decode("utf-8", "backslashreplace")


def usable_names(paths, problems: list[str] | None) -> list[Path]:
    usable = []
    for path in paths:
        if is_utf8(path.name):
            usable.append(path)
        elif problems is not None:
            problems.append(
                f"skipped {os.fsencode(path.name)!r} in {display_path(path.parent)}: its name is not valid UTF-8; "
                "rename it (e.g. convmv -f latin1 -t utf8)"
            )
    return usable


def list_images(folder: Path, problems: list[str] | None = None) -> list[Path]:
    """Image files directly in `folder`, natural-sorted; other files are ignored. Names that are
    not UTF-8 are left out and, when `problems` is given, reported there."""
    found = (
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    return sorted(usable_names(found, problems), key=lambda p: natural_key(p.name))


def list_dirs(folder: Path, problems: list[str] | None = None) -> list[Path]:
    found = (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(usable_names(found, problems), key=lambda p: natural_key(p.name))


def require_dir(path: str | Path, what: str) -> Path:
    if not str(path).strip():
        raise ValueError(f"{what} is empty: give the folder that holds your multi-view sets")
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(
            f"{what} {display_path(folder)} does not exist: check the path "
            "(absolute, or relative to ComfyUI's input folder)"
        )
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} {display_path(folder)} is a file, not a folder of sets")
    return folder
