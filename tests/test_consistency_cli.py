"""`python -m mvic score`: folders of composites, dataset folders, the JSON list and the contact sheet."""

import json
import subprocess
import sys

import consistency_scenes as scenes
import numpy as np
import pytest
from packload import ROOT, mvic_module
from PIL import Image

layout = mvic_module("layout")


def run_score(*args, cwd=ROOT):
    command = [sys.executable, "-m", "mvic", "score", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def composites_folder(tmp_path_factory):
    """Two true sets, one mixed set, one repeated set as 2x2 PNGs (+ one file that is not an image)."""
    folder = tmp_path_factory.mktemp("composites")
    sets = [scenes.true_set(seed)[0] for seed in range(4)]
    grid = layout.CompositeLayout(2, 2, 384, 384)
    named = {
        "true_a.png": sets[0],
        "true_b.png": sets[1],
        "mixed.png": scenes.mixed_set(sets, 0),
        "nested/repeated.png": scenes.repeat_view(sets[2][1], 4, seed=5),
    }
    for name, views in named.items():
        (folder / name).parent.mkdir(exist_ok=True)
        Image.fromarray(layout.compose(views, grid)).save(folder / name)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_folder_of_composites_gives_json_and_sheet(composites_folder, tmp_path):
    out = run_score(composites_folder, "--grid", "2x2", "--json", tmp_path / "scores.json")
    assert out.returncode == 0, out.stderr
    entries = {e["file"]: e for e in json.loads((tmp_path / "scores.json").read_text())}
    assert set(entries) == {"true_a.png", "true_b.png", "mixed.png", "nested/repeated.png", "broken.jpg"}
    assert "not a readable image" in entries["broken.jpg"]["error"]
    for name in ("true_a.png", "true_b.png"):
        assert entries[name]["consistency"] > 0.5 > entries["mixed.png"]["consistency"]
        assert entries[name]["duplicate_pairs"] == 0 and len(entries[name]["pairs"]) == 6
    repeated = entries["nested/repeated.png"]
    assert repeated["duplicate_pairs"] == 6 and repeated["consistency"] == 0.0
    assert "duplicate_views" in repeated["flags"]
    assert "views_disagree" in entries["mixed.png"]["flags"]
    assert {"min", "median", "max"} <= set(entries["true_a.png"]["spread_deg"])
    assert entries["true_a.png"]["grid"]["flags"] == []
    sheet = Image.open(tmp_path / "scores.png")
    assert sheet.width > 800 and sheet.height > 300
    assert "scored 4 of 5 composite(s)" in out.stdout and "broken.jpg: error" in out.stdout
    # Scoring again next to the images must not score our own outputs.
    again = run_score(composites_folder, "--grid", "2x2", "--json", composites_folder / "scores.json")
    assert again.returncode == 0 and "] scores.png:" not in again.stdout and "scored 4 of 5" in again.stdout


def test_dataset_folder_takes_layout_and_poses_from_its_manifest(tmp_path):
    dataset = tmp_path / "demo"
    command = [sys.executable, "-m", "mvic", "demo", "--out", str(dataset)]
    built = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    out = run_score(dataset, "--json", tmp_path / "demo.json", "--sheet", tmp_path / "sheet.png")
    assert out.returncode == 0, out.stderr
    entries = json.loads((tmp_path / "demo.json").read_text())
    assert len(entries) == 6 and all(e["file"].startswith("images/") and e["grid"]["rows"] == 2 for e in entries)
    assert all(p["rotation_source"] == "poses" for e in entries for p in e["pairs"])
    # A shared sky gradient and floor are not content bleeding across the borders.
    assert all(e["grid"]["flags"] == [] and e["duplicate_pairs"] == 0 for e in entries)
    assert min(e["spread_deg"]["min"] for e in entries) > 60  # the loader picked well-separated views
    assert (tmp_path / "sheet.png").is_file()


def test_bad_input_is_a_clear_error(tmp_path):
    (tmp_path / "one.png").write_bytes(b"")
    no_grid = run_score(tmp_path, "--json", tmp_path / "s.json")
    assert no_grid.returncode == 2 and "give --grid ROWSxCOLS" in no_grid.stderr and "Traceback" not in no_grid.stderr
    bad_grid = run_score(tmp_path, "--grid", "2by2")
    assert bad_grid.returncode == 2 and "write ROWSxCOLS" in bad_grid.stderr
    missing = run_score(tmp_path / "nope", "--grid", "2x2")
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    odd = tmp_path / "odd"
    odd.mkdir()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(odd / "a.png")
    nothing = run_score(odd, "--grid", "2x3", "--json", tmp_path / "odd.json")
    assert nothing.returncode == 1 and "does not split into 2 rows x 3 cols" in nothing.stdout
    assert not (tmp_path / "s.json").exists()
