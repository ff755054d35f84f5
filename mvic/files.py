"""Helpers every stage shares: where the pack's own files are, safe file names, atomic writes
with the mode a user expects, and how many worker threads to use."""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import BinaryIO, Callable

PACK_ROOT = Path(__file__).resolve().parents[1]
# A checkout (ComfyUI's custom_nodes, `pip install -e .`) has trainers/ beside mvic/; `pip install .`
# ships it inside the package as mvic/trainers and keeps the config in the user's config folder.
INSTALLED = not (PACK_ROOT / "trainers" / "launch_sd_scripts.py").is_file()
TRAINERS_DIR = Path(__file__).resolve().parent / "trainers" if INSTALLED else PACK_ROOT / "trainers"
TOKENIZERS_DIR = TRAINERS_DIR / "tokenizers"


def safe_name(name: str, fallback: str = "set") -> str:
    """A file-name-safe version of a set name: no separators, no leading dots, no '..'."""
    text = unicodedata.normalize("NFKC", name)
    text = re.sub(r"[^\w.-]+", "_", text, flags=re.UNICODE)
    text = re.sub(r"\.{2,}", "_", text).strip("._")
    return text[:80] or fallback


def user_cache_dir(*parts: str) -> Path:
    """The pack's own cache folder (`$XDG_CACHE_HOME/mvic`, else ~/.cache/mvic), or a folder inside it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base, "mvic", *parts)


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """`write(handle)` fills a temporary file beside `path` that then replaces it in one step: a reader
    (or a crash) never sees half a file. The file gets the umask's mode (0644 under 022), as open()
    would give it: mkstemp alone makes every file 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            os.fchmod(handle.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
