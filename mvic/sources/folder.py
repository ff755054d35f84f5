"""Folder of sets: `<root>/<set>/*.{jpg,jpeg,png,webp}`, frames in natural order.

A root that holds images itself (and no set folders) is one set.
"""

from __future__ import annotations

from pathlib import Path

from ..datatypes import Frame, MultiViewSet, SkippedInput
from .common import display_path, list_dirs, list_images, require_dir


def category_from_name(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip() or "object"


def load_folder_sets(root: str | Path) -> tuple[list[MultiViewSet], list[SkippedInput]]:
    root = require_dir(root, "folder of sets")
    sets, skipped, bad_folders = [], [], []
    folders = list_dirs(root, bad_folders)
    skipped += [SkippedInput("(folder)", problem) for problem in bad_folders]
    if not folders and not bad_folders and list_images(root):
        folders = [root]
    for folder in folders:
        problems: list[str] = []
        frames = [Frame(path=p) for p in list_images(folder, problems)]
        name = display_path(folder.name)  # the root itself may be the set; its name is not checked above
        if not frames:
            skipped.append(SkippedInput(name, "; ".join(["no .jpg/.jpeg/.png/.webp images in the folder", *problems])))
            continue
        category = category_from_name(name)
        sets.append(MultiViewSet(name=name, category=category, frames=frames, source="folder", warnings=problems))
    return sets, skipped
