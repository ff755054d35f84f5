"""On-disk cache of model annotations, so a re-run never asks again for a composite
it already captioned.

Keyed by everything that changes the model's answer: the composite's pixels, its
layout and markers, the prompt version, the backend and the model. What is stored
is the validated annotation, not the caption, so trigger and appearance-only can
change without a request. One small JSON file per entry, written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..datatypes import Composite
from ..files import atomic_write_text
from ..images import array_sha256
from .annotation import ImageAnnotation
from .backends.request import TokenUsage

CACHE_FORMAT = 1
log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    if os.environ.get("MVIC_CAPTION_CACHE"):
        return Path(os.environ["MVIC_CAPTION_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mvic" / "captions"


@dataclass(frozen=True)
class CacheKey:
    composite_sha256: str
    layout: str  # "2x2 of 512x512"
    markers: str  # "[FOUR-VIEWS] [TOP-LEFT] ..."
    prompt_version: str  # includes the input mode (composite / views)
    backend: str
    model: str

    @classmethod
    def for_composite(cls, composite: Composite, prompt_version: str, backend: str, model: str) -> "CacheKey":
        layout = composite.layout
        return cls(
            composite_sha256=array_sha256(composite.image),
            layout=f"{layout.rows}x{layout.cols} of {layout.panel_width}x{layout.panel_height}",
            markers=" ".join([composite.markers.prefix, *composite.markers.panels]),
            prompt_version=prompt_version,
            backend=backend,
            model=model,
        )

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedAnnotation:
    annotation: ImageAnnotation
    usage: TokenUsage  # what the original request cost (not spent again)


class CaptionCache:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()

    def _path(self, key: CacheKey) -> Path:
        digest = key.digest
        return self.folder / digest[:2] / f"{digest}.json"

    def get(self, key: CacheKey) -> CachedAnnotation | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("caption cache %s is unreadable (%s); asking the model again", path, exc)
            return None
        if data.get("format") != CACHE_FORMAT or data.get("key") != asdict(key):
            return None  # an older format, or (astronomically unlikely) a digest collision
        try:
            annotation = ImageAnnotation.model_validate(data["annotation"])
            usage = TokenUsage(**data.get("usage", {}))
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("caption cache %s holds an invalid annotation (%s); asking the model again", path, exc)
            return None
        return CachedAnnotation(annotation, usage)

    def put(self, key: CacheKey, annotation: ImageAnnotation, usage: TokenUsage) -> None:
        record = {
            "format": CACHE_FORMAT,
            "key": asdict(key),
            "annotation": annotation.model_dump(mode="json"),
            "usage": asdict(usage),
        }
        try:
            atomic_write_text(self._path(key), json.dumps(record, ensure_ascii=False, sort_keys=True, indent=1))
        except OSError as exc:  # a full disk costs a re-request next time, not this run
            log.warning("could not write caption cache %s (%s)", self._path(key), exc)
