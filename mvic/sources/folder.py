"""Folder of sets: `<root>/<set>/*.{jpg,jpeg,png,webp}`, frames in natural order.

A root that holds images itself (and no set folders) is one set.
"""
from __future__ import annotations

from pathlib import Path

from ..datatypes import Frame, MultiViewSet, SkippedInput
from .common import list_dirs, list_images, require_dir


def category_from_name(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip() or "object"


def load_folder_sets(root: str | Path) -> tuple[list[MultiViewSet], list[SkippedInput]]:
    root = require_dir(root, "folder of sets")
    sets, skipped = [], []
    folders = list_dirs(root)
    if not folders and list_images(root):
        folders = [root]
    for folder in folders:
        frames = [Frame(path=p) for p in list_images(folder)]
        name = folder.name
        if not frames:
            skipped.append(SkippedInput(name, "no .jpg/.jpeg/.png/.webp images in the folder"))
            continue
        sets.append(MultiViewSet(name=name, category=category_from_name(name), frames=frames, source="folder"))
    return sets, skipped
