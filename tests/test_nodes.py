"""The V3 nodes run outside a ComfyUI server (called the way ComfyUI calls them: `cls.execute`) and
convert data both ways exactly."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from fixtures_data import write_folder_sets
from packload import ROOT, mvic_module, node_class

datatypes = mvic_module("datatypes")


@pytest.fixture(scope="module")
def loaded():
    return node_class("MVIC_MultiViewLoader").execute("sample", "", 4, "auto", 3)


def test_loader_outputs_sets_and_a_preview(loaded):
    mv_sets, preview, report = loaded
    assert isinstance(mv_sets, datatypes.MultiViewSets) and len(mv_sets.sets) == 3
    assert preview.dtype == torch.float32 and tuple(preview.shape) == (12, 256, 256, 3)
    assert 0.0 <= float(preview.min()) and float(preview.max()) <= 1.0
    assert report.startswith("3 set(s) loaded")


def test_grid_then_split_is_exact(loaded):
    composites, images, _ = node_class("MVIC_CompositeGrid").execute(
        loaded[0], 2, 2, 64, 64, "pad", "#102030", 2, "#ffffff"
    )
    assert isinstance(composites, datatypes.Composites) and tuple(images.shape) == (3, 128, 128, 3)
    assert composites.items[0].panels[0].pose is not None and composites.items[0].category == "ball"
    (views,) = node_class("MVIC_SplitComposite").execute(images, 2, 2)
    assert tuple(views.shape) == (12, 64, 64, 3)
    assert torch.equal(views[5], images[1, :64, 64:])  # composite 1, top-right
    as_uint8 = np.round(images[0].numpy() * 255).astype(np.uint8)
    assert np.array_equal(as_uint8, composites.items[0].image)


def test_split_spreads_a_remainder_and_rejects_an_impossible_grid():
    (views,) = node_class("MVIC_SplitComposite").execute(torch.zeros(1, 100, 64, 3), 3, 2)  # 100 rows: 33 + 34 + 33
    assert tuple(views.shape) == (6, 33, 32, 3)
    with pytest.raises(ValueError, match="do not split into 3 panels"):
        node_class("MVIC_SplitComposite").execute(torch.zeros(1, 2, 64, 3), 3, 2)


def test_grid_needs_as_many_views_as_panels(loaded):
    with pytest.raises(ValueError, match="views per set to 6"):
        node_class("MVIC_CompositeGrid").execute(loaded[0], 2, 3, 64, 64, "crop")


def test_save_node_writes_and_reports(loaded, tmp_path, monkeypatch):
    composites, _, _ = node_class("MVIC_CompositeGrid").execute(loaded[0], 2, 2, 64, 64, "crop")
    monkeypatch.chdir(tmp_path)  # outside ComfyUI the output folder is the working directory
    out = node_class("MVIC_SaveICLoRADataset").execute(composites, "ds", "jpg", "trig")
    folder, text = out.result
    assert folder == str((tmp_path / "ds").resolve()) and out.ui["text"] == [text]
    assert len(list((tmp_path / "ds" / "images").glob("*.jpg"))) == 3


def test_loader_is_changed_follows_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MVIC_SETTINGS", str(tmp_path / "settings.json"))
    monkeypatch.setenv("MVIC_ALLOWED_FOLDERS", str(tmp_path))
    write_folder_sets(tmp_path, ["a"], frames=4)
    loader = node_class("MVIC_MultiViewLoader")
    first = loader.fingerprint_inputs(source="folder", path=str(tmp_path))
    assert first == loader.fingerprint_inputs(source="folder", path=str(tmp_path))
    (tmp_path / "a" / "frame5.jpg").write_bytes((tmp_path / "a" / "frame1.jpg").read_bytes())
    assert loader.fingerprint_inputs(source="folder", path=str(tmp_path)) != first


def test_cli_demo_runs_on_the_embedded_sample(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mvic", "demo", "--out", str(tmp_path / "demo")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    records = [json.loads(l) for l in (tmp_path / "demo" / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == 6 and {r["category"] for r in records} == {"ball", "box", "can"}
    assert all(r["layout"]["width"] == 512 for r in records)


def test_cli_bad_input_is_a_clear_error(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "mvic", "build", "--input", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "nope does not exist" in out.stderr and "Traceback" not in out.stderr
