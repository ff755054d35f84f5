"""Where a path that arrived in a workflow may point.

A workflow's widgets are untrusted: a relative path is taken inside the folder the node
works in (ComfyUI's input/ for reading, output/ for writing), and it may not leave that
folder through `..` or a symbolic link. An absolute path is read only under a folder the
user allowed on this machine (`python -m mvic config allow-folder DIR`), never written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

ALLOW_HINT = "python -m mvic config allow-folder {folder}"


class PathNotAllowed(ValueError):
    """A path from a widget that points outside the folders this node may use."""


def real(path: str | Path) -> Path:
    """The path with every symbolic link and `..` resolved (parts that don't exist yet kept)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """True when `path`, resolved, is `folder` or lies under it (both resolved)."""
    resolved, root = real(path), real(folder)
    return resolved == root or root in resolved.parents


def inside_any(path: str | Path, folders: Iterable[str | Path]) -> bool:
    return any(is_inside(path, folder) for folder in folders)


def confined_input(text: str, base: str | Path, what: str, allowed: Iterable[str | Path] = ()) -> Path:
    """A path to read: relative -> under `base`; absolute -> only under an allowed folder."""
    text = text.strip()
    if not text:
        raise PathNotAllowed(f"{what} is empty: give a folder inside {base}")
    path = Path(text).expanduser()
    allowed = list(allowed)
    if path.is_absolute():
        if inside_any(path, [base, *allowed]):
            return real(path)
        raise PathNotAllowed(
            f"{what} {text!r} is outside {base}, and this machine's settings allow no folder it lies in. "
            f"Put the data inside {base} and give a relative path, or allow its folder once on this machine: "
            f"`{ALLOW_HINT.format(folder=path.parent)}` (a workflow cannot allow folders)"
        )
    candidate = Path(base) / path
    if not is_inside(candidate, base) and not inside_any(candidate, allowed):
        raise PathNotAllowed(
            f"{what} {text!r} leaves {base} (through '..' or a link); give a path inside it, "
            f"or allow the target's folder on this machine: `{ALLOW_HINT.format(folder='DIR')}`"
        )
    return real(candidate)


def confined_output(text: str, base: str | Path, what: str) -> Path:
    """A path to write: relative, and still inside `base` once links and `..` are resolved."""
    text = text.strip()
    if not text:
        raise PathNotAllowed(f"{what} is empty: give a folder name (it is created inside {base})")
    path = Path(text)
    if path.is_absolute() or text.startswith("~"):
        raise PathNotAllowed(
            f"{what} {text!r} is an absolute path: outputs stay inside {base}; give a relative name such as "
            f"'my_dataset' (copy the result elsewhere yourself if you need it there)"
        )
    candidate = Path(base) / path
    if ".." in path.parts or not is_inside(candidate, base):
        raise PathNotAllowed(f"{what} {text!r} leaves {base} (through '..' or a link): give a name inside it")
    return real(candidate)
