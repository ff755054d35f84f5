"""A folder of finished IC-LoRA composites, each with a same-name `.txt` caption
(`0001.jpg` + `0001.txt`, as the public In-Context-LoRA data and trainers' datasets are laid out).

Each composite becomes a set of one frame that carries its caption word for word; the
composite stage (mvic.importing) reads the layout from the caption, splits at the real
seams and re-composes with the least refit. Hidden files (`._0001.jpg`, `.DS_Store`) are
ignored; a composite without a caption, or with an empty one, is skipped and reported.
"""

from __future__ import annotations

from pathlib import Path

from ..datatypes import Frame, MultiViewSet, SkippedInput
from .common import list_dirs, list_images, require_dir

CAPTION_SUFFIX = ".txt"


def read_caption(path: Path) -> str:
    """The caption file's text exactly (a UTF-8 byte-order mark dropped, line ends kept)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"caption {path.name} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"
        ) from None


def looks_like_composites(root: Path) -> bool:
    """Images directly in `root`, every one with a same-name caption (what `auto` takes for composites)."""
    images = list_images(root)
    return bool(images) and all(image.with_suffix(CAPTION_SUFFIX).is_file() for image in images)


def load_composite_sets(root: str | Path) -> tuple[list[MultiViewSet], list[SkippedInput]]:
    root = require_dir(root, "folder of composites")
    images = list_images(root)
    if not images:
        folders = ", ".join(p.name for p in list_dirs(root)[:5])
        where = f"; it has the folder(s) {folders}: point at the one holding the images" if folders else ""
        raise FileNotFoundError(f"{root} holds no composites (.jpg/.jpeg/.png/.webp with a .txt caption each){where}")
    sets, skipped, seen = [], [], set()
    for image in images:
        if image.stem in seen:  # 0001.jpg and 0001.png would share 0001.txt
            skipped.append(
                SkippedInput(
                    image.name, f"another image is also called {image.stem}: rename one (each needs its own caption)"
                )
            )
            continue
        seen.add(image.stem)
        caption_path = image.with_suffix(CAPTION_SUFFIX)
        if not caption_path.is_file():
            skipped.append(SkippedInput(image.name, f"no caption {caption_path.name} beside it"))
            continue
        try:
            caption = read_caption(caption_path)
        except (OSError, ValueError) as exc:
            skipped.append(SkippedInput(image.name, str(exc)))
            continue
        if not caption.strip():
            skipped.append(SkippedInput(image.name, f"caption {caption_path.name} is empty"))
            continue
        sets.append(
            MultiViewSet(
                name=image.stem,
                category="",
                frames=[Frame(image)],
                source="composites",
                chosen=[0],
                selection="composite",
                caption=caption,
            )
        )
    return sets, skipped
