"""pytest plugin (`-p tests.pack_collection` in pyproject.toml): collect the repository root
as a plain directory.

The root is a ComfyUI node pack: its __init__.py uses relative imports and ComfyUI loads
it by file path. pytest would otherwise import it as a package of its own, which fails
under a folder name like ComfyUI-MultiView-ICLoRA and loads a second copy of the pack
under others. Tests load the pack via tests/packload.py. (A root conftest.py can't do
this: importing it imports the root package first.)"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_collect_directory(path, parent):
    if Path(path).resolve() == ROOT:
        return pytest.Dir.from_parent(parent, path=Path(path))
    return None
