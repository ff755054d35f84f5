"""Dataset hygiene: --min-consistency / CompositeGrid's min_consistency drop captures whose views do not
agree, reported per set (core, CLI build, real ComfyUI)."""

import json
import subprocess
import sys

import consistency_scenes as scenes
import pytest
from packload import ROOT, mvic_module
from PIL import Image

hygiene = mvic_module("consistency.hygiene")
loading = mvic_module("loading")
composites_module = mvic_module("composites")
layout = mvic_module("layout")


def write_captures(root):
    """`good`: one scene seen from 4 angles; `jumbled`: 4 frames of 4 scenes (a capture gone wrong)."""
    sets = [scenes.true_set(seed)[0] for seed in range(4)]
    for name, views in (("good", sets[0]), ("jumbled", scenes.mixed_set(sets, 1))):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index, view in enumerate(views):
            Image.fromarray(view).save(root / name / f"frame{index + 1}.png")
    return root


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    return write_captures(tmp_path_factory.mktemp("captures"))


def test_filter_drops_sets_whose_views_disagree(captures):
    sets = loading.load_multiview_sets("folder", captures, 4)
    built = composites_module.build_composites(sets, layout.CompositeLayout(2, 2, 384, 384))
    kept, lines = hygiene.filter_composites(built, 0.3)
    assert [c.set_name for c in kept.items] == ["good"]
    (dropped,) = kept.skipped
    assert dropped.name == "jumbled" and dropped.reason.startswith("views do not agree: consistency 0.")
    assert "views_disagree" in dropped.reason
    assert [line.split(":")[0] for line in lines] == ["consistency good", "consistency jumbled"]
    assert lines[0].endswith("kept") and lines[1].endswith("dropped")
    assert hygiene.filter_composites(built, 0.0) == (built, [])  # 0: nothing scored, nothing dropped
    with pytest.raises(ValueError, match="min_consistency = 1.5"):
        hygiene.filter_composites(built, 1.5)


def test_cli_build_with_min_consistency(captures, tmp_path):
    command = [
        sys.executable,
        "-m",
        "mvic",
        "build",
        "--source",
        "folder",
        "--input",
        str(captures),
        "--out",
        str(tmp_path / "ds"),
        "--panel",
        "384x384",
        "--min-consistency",
        "0.3",
    ]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in (tmp_path / "ds" / "metadata.jsonl").read_text().splitlines()]
    assert [r["set_name"] for r in records] == ["good"]
    assert "consistency jumbled: 0." in out.stdout and "skipped jumbled: views do not agree" in out.stdout


def test_composite_grid_input_in_real_comfyui(comfyui):
    write_captures(comfyui.base_dir / "input" / "mvic_hygiene")
    prompt = {
        "1": {
            "class_type": "MVIC_MultiViewLoader",
            "inputs": {"source": "folder", "path": "mvic_hygiene", "views": 4, "selection": "auto", "max_sets": 0},
        },
        "2": {
            "class_type": "MVIC_CompositeGrid",
            "inputs": {
                "mv_sets": ["1", 0],
                "rows": 2,
                "cols": 2,
                "panel_width": 384,
                "panel_height": 384,
                "fit": "crop",
                "min_consistency": 0.3,
            },
        },
        "3": {
            "class_type": "MVIC_SaveICLoRADataset",
            "inputs": {"composites": ["2", 0], "folder": "mvic_hygiene_dataset", "image_format": "png"},
        },
    }
    entry = comfyui.run_prompt(prompt, timeout=300)
    folder = comfyui.base_dir / "output" / "mvic_hygiene_dataset"
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert [r["set_name"] for r in records] == ["good"]
    assert "skipped jumbled: views do not agree" in entry["outputs"]["3"]["text"][0]
