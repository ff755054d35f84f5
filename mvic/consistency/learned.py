"""Optional learned similarity: mean cosine similarity of image features (DINOv2, CLIP vision, ...)
from a model folder on this machine, never downloaded.

Which folder is a local setting (MVIC_SIMILARITY_MODEL, or the CLI's --similarity-model), never a
workflow widget. Without it, or without torch + transformers, scoring goes on without this number
and says why. It is reported beside the geometric score, not folded into it: nothing here has been
measured with real weights (no weights can be downloaded where this was built).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MODEL_ENV = "MVIC_SIMILARITY_MODEL"
_LOADED: dict[str, "LearnedSimilarity"] = {}


@dataclass
class LearnedSimilarity:
    name: str  # "learned similarity: <folder name> (<model class>)"
    model: object
    processor: object

    def embed(self, views: list[np.ndarray]) -> np.ndarray:
        import torch

        inputs = self.processor(images=[np.ascontiguousarray(v[..., :3]) for v in views], return_tensors="pt")
        with torch.no_grad():
            if hasattr(self.model, "get_image_features"):  # CLIP / SigLIP: the projected image embedding
                features = self.model.get_image_features(pixel_values=inputs["pixel_values"])
                features = getattr(features, "pooler_output", features)
            else:  # DINOv2 / ViT: the class token
                features = self.model(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 0]
        features = features.float().numpy()
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

    def similarity(self, views: list[np.ndarray]) -> float:
        features = self.embed(views)
        return float(np.mean([features[a] @ features[b] for a, b in combinations(range(len(views)), 2)]))


def configured_similarity(folder: str = "") -> tuple[LearnedSimilarity | None, str]:
    """The configured model (loaded once per process) or None, and a note saying which or why not."""
    folder = (folder or os.environ.get(MODEL_ENV, "")).strip()
    if not folder:
        return None, f"learned similarity: off (set {MODEL_ENV} to a local DINOv2 / CLIP model folder to add it)"
    path = Path(folder).expanduser()
    if not (path / "config.json").is_file():
        return None, f"learned similarity: skipped, {path} has no config.json (a transformers model folder is needed)"
    if str(path) in _LOADED:
        return _LOADED[str(path)], _LOADED[str(path)].name
    try:
        import torch  # noqa: F401
        from transformers import AutoImageProcessor, AutoModel
    except ImportError as exc:
        return None, f"learned similarity: skipped, it needs torch and transformers ({exc})"
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a folder transformers cannot read as a model
        return None, f"learned similarity: skipped, {path} does not load ({exc})"
    loaded = LearnedSimilarity(f"learned similarity: {path.name} ({type(model).__name__})", model, processor)
    log.info("loaded %s", loaded.name)
    _LOADED[str(path)] = loaded
    return loaded, loaded.name
