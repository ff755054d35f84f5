"""Acceptance 7: the pack inside a real ComfyUI (COMFYUI_DIR), driven over its HTTP API."""

import json
import re
from pathlib import Path

from packload import PACK_NAME

from test_pack_import import EXPECTED, SEEDS, STAGES


def test_object_info_lists_our_nodes_with_their_inputs(comfyui):
    """What the real ComfyUI serves for our V3 nodes: the same IDs, inputs and outputs, and ComfyUI's
    conventions (issue 14 point 3): a display name people read, a sub-category (dataset / train /
    sample), a tooltip on every input, an explicit control_after_generate on every seed."""
    info = comfyui.get("/object_info")
    from packload import nodes_by_id

    NODES = nodes_by_id()

    for key, display in EXPECTED.items():
        assert key in info, f"{key} missing; ComfyUI log:\n{comfyui.log()}"
        node = info[key]
        assert node["display_name"] == display
        declared = NODES[key].INPUT_TYPES()
        assert node["input_order"]["required"] == list(declared["required"])
        assert node["input_order"].get("optional", []) == list(declared.get("optional", {}))
        assert node["output"] == list(NODES[key].RETURN_TYPES)
        root, stage = node["category"].split("/")
        assert root == "MultiView ICLoRA" and stage in STAGES, node["category"]
        inputs = {**node["input"]["required"], **node["input"].get("optional", {})}
        assert [name for name, spec in inputs.items() if not spec[1].get("tooltip")] == [], key
        for name, spec in inputs.items():
            if spec[0] == "INT" and name in ("seed", "noise_seed"):
                assert spec[1].get("control_after_generate") is SEEDS[(key, name)], (key, name)
    # The pack imported: ComfyUI lists each custom node folder with its import time ("(IMPORT FAILED)" after
    # the time when it failed). Only our lines count: ComfyUI's own audio nodes fail without torchaudio,
    # which has no build for torch 2.14.1 ("Cannot import .../comfy_extras/nodes_audio.py ...").
    log = comfyui.log_path.read_text(errors="replace")
    ours = [line for line in log.splitlines() if PACK_NAME in line]
    assert any(re.search(r"\d seconds: \S*custom_nodes/" + re.escape(PACK_NAME), line) for line in ours), log[-6000:]
    assert not [line for line in ours if "IMPORT FAILED" in line or "Cannot import" in line], log[-6000:]


def test_loader_composite_save_prompt_writes_the_dataset(comfyui):
    prompt = {
        "1": {
            "class_type": "MVIC_MultiViewLoader",
            "inputs": {"source": "sample", "path": "", "views": 4, "selection": "auto", "max_sets": 3},
        },
        "2": {
            "class_type": "MVIC_CompositeGrid",
            "inputs": {
                "mv_sets": ["1", 0],
                "rows": 2,
                "cols": 2,
                "panel_width": 128,
                "panel_height": 128,
                "fit": "crop",
            },
        },
        "3": {
            "class_type": "MVIC_SaveICLoRADataset",
            "inputs": {"composites": ["2", 0], "folder": "harness_dataset", "image_format": "png"},
        },
    }
    entry = comfyui.run_prompt(prompt, timeout=300)
    folder = comfyui.base_dir / "output" / "harness_dataset"
    assert sorted(p.suffix for p in (folder / "images").glob("*.png")) == [".png"] * 3
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["layout"]["width"] == 256 for r in records)
    for record in records:
        assert (folder / record["caption_file"]).read_text().startswith("[FOUR-VIEWS] ")
    assert entry["outputs"]["3"]["text"][0].startswith(f"dataset: {folder.resolve()}")
    assert Path(folder / "dataset.toml").is_file()
