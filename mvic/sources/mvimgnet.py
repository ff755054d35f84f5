"""MVImgNet layout: `<root>/<class_id>/<instance_id>/images/*.jpg` with optional
`sparse/0/{cameras,images}.bin` and an optional `mvimgnet_category.txt` (`id,name`
lines, CRLF allowed, ids not contiguous).

Frames COLMAP did not register keep `pose=None`; a malformed model is reported and
the set falls back to frame order.
"""

from __future__ import annotations

from pathlib import Path

from ..datatypes import Frame, MultiViewSet, SkippedInput
from .colmap import ColmapError, read_model
from .common import list_dirs, list_images, require_dir

CATEGORY_FILE = "mvimgnet_category.txt"


def read_category_names(path: Path) -> dict[str, str]:
    names = {}
    for raw in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "," not in line:
            continue
        class_id, name = line.split(",", 1)
        names[class_id.strip()] = name.strip()
    return names


def _find_category_file(root: Path) -> Path | None:
    for folder in (root, root.parent):
        candidate = folder / CATEGORY_FILE
        if candidate.is_file():
            return candidate
    return None


def looks_like_mvimgnet(root: Path) -> bool:
    return any((instance / "images").is_dir() for cls in list_dirs(root) for instance in list_dirs(cls))


def load_mvimgnet_sets(root: str | Path) -> tuple[list[MultiViewSet], list[SkippedInput]]:
    root = require_dir(root, "MVImgNet root")
    category_file = _find_category_file(root)
    names = read_category_names(category_file) if category_file else {}
    sets, skipped, bad_folders = [], [], []
    for class_dir in list_dirs(root, bad_folders):
        for instance in list_dirs(class_dir, bad_folders):
            set_name = f"{class_dir.name}/{instance.name}"
            image_dir = instance / "images"
            if not image_dir.is_dir():
                skipped.append(SkippedInput(set_name, "no images/ folder"))
                continue
            warnings: list[str] = []
            paths = list_images(image_dir, warnings)
            if not paths:
                skipped.append(SkippedInput(set_name, "; ".join(["images/ holds no images", *warnings])))
                continue
            poses = {}
            sparse = instance / "sparse" / "0"
            if (sparse / "images.bin").is_file():
                try:
                    poses = read_model(sparse)
                except (ColmapError, OSError) as exc:
                    warnings.append(f"COLMAP model unreadable, views chosen in frame order instead: {exc}")
            frames = [Frame(path=p, pose=poses.get(p.name) or poses.get(f"images/{p.name}")) for p in paths]
            category = names.get(
                class_dir.name, f"object class {class_dir.name}" if class_dir.name.isdigit() else class_dir.name
            )
            sets.append(
                MultiViewSet(name=set_name, category=category, frames=frames, source="mvimgnet", warnings=warnings)
            )
    skipped += [SkippedInput("(folder)", problem) for problem in bad_folders]
    return sets, skipped
