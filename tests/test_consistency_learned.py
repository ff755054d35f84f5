"""Optional learned similarity: only from a local model folder the user configures; skipped cleanly otherwise.
Tiny random DINOv2 and CLIP models (written here) check the plumbing; random weights mean the number
itself says nothing, which is why it is reported beside the geometric score and not folded into it."""

import argparse
import json

import numpy as np
import pytest
from packload import mvic_module
from PIL import Image

learned = mvic_module("consistency.learned")
consistency_cli = mvic_module("consistency.cli")

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from transformers import BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config, Dinov2Model

    root = tmp_path_factory.mktemp("similarity_models")
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    Dinov2Model(Dinov2Config(**small, image_size=56, patch_size=14)).save_pretrained(root / "dinov2")
    processor = dict(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    BitImageProcessor(**processor).save_pretrained(root / "dinov2")
    text = dict(small, vocab_size=100, projection_dim=16)
    vision = dict(small, image_size=56, patch_size=14, projection_dim=16)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(root / "clip")
    CLIPImageProcessor(**processor).save_pretrained(root / "clip")
    return root


def _views(count=3):
    return [np.random.default_rng(i).integers(0, 255, (64, 80, 3), dtype=np.uint8) for i in range(count)]


def test_not_configured_or_unusable_is_skipped_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.delenv(learned.MODEL_ENV, raising=False)
    model, note = learned.configured_similarity()
    assert model is None and learned.MODEL_ENV in note and "off" in note
    model, note = learned.configured_similarity(str(tmp_path))
    assert model is None and "has no config.json" in note
    (tmp_path / "config.json").write_text("{}")
    model, note = learned.configured_similarity(str(tmp_path))
    assert model is None and "does not load" in note


@pytest.mark.parametrize("name, model_class", [("dinov2", "Dinov2Model"), ("clip", "CLIPModel")])
def test_a_local_model_gives_a_similarity(tiny_models, monkeypatch, name, model_class):
    monkeypatch.setenv(learned.MODEL_ENV, str(tiny_models / name))
    model, note = learned.configured_similarity()
    assert model is not None and note == f"learned similarity: {name} ({model_class})"
    views = _views()
    assert -1.0 <= model.similarity(views) <= 1.0
    assert model.similarity([views[0], views[0]]) == pytest.approx(1.0, abs=1e-5)
    assert learned.configured_similarity()[0] is model  # loaded once per process


def test_cli_flag_reports_it_beside_the_score(tiny_models, tmp_path, monkeypatch):
    monkeypatch.delenv(learned.MODEL_ENV, raising=False)
    composite = np.concatenate([np.concatenate(_views(2), axis=1)] * 2, axis=0)
    Image.fromarray(composite).save(tmp_path / "c.png")
    args = argparse.Namespace(
        path=str(tmp_path / "c.png"),
        grid="2x2",
        divider=0,
        json=str(tmp_path / "s.json"),
        sheet="",
        similarity_model=str(tiny_models / "dinov2"),
    )
    assert consistency_cli.run(args) == 0
    (entry,) = json.loads((tmp_path / "s.json").read_text())
    assert -1.0 <= entry["learned_similarity"] <= 1.0 and entry["learned_note"].startswith("learned similarity: dinov2")
