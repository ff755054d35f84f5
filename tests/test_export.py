"""Dataset export: files, manifest, trainer configs, re-runs, edited captions (acceptance 4)."""

import json
import os
import subprocess
import tomllib

import pytest
import yaml
from fixtures_data import write_folder_sets
from packload import ROOT, mvic_module
from sdscripts_env import SKIP_REASON, sd_scripts_paths

loading = mvic_module("loading")
composites_mod = mvic_module("composites")
dataset = mvic_module("export.dataset")
manifest = mvic_module("export.manifest")
layout_mod = mvic_module("layout")

LAYOUT = layout_mod.CompositeLayout(2, 2, 64, 48)


def make(root, names, **kw):
    write_folder_sets(root, names, frames=5)
    return composites_mod.build_composites(loading.load_multiview_sets("folder", root, 4, **kw), LAYOUT)


def snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_export_writes_a_complete_dataset(tmp_path):
    out = tmp_path / "ds"
    report = dataset.save_dataset(make(tmp_path / "src", ["mug", "shoe"]), out, trigger="mvstyle")
    assert len(report.written) == 2
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    for record in records:
        caption = (out / record["caption_file"]).read_text()
        assert caption.startswith("mvstyle [FOUR-VIEWS] ") and all(m in caption for m in record["markers"]["panels"])
        assert record["layout"] == {
            "rows": 2,
            "cols": 2,
            "panel_width": 64,
            "panel_height": 48,
            "width": 128,
            "height": 96,
            "divider_width": 0,
        }
        assert len(record["panels"]) == 4 and all(len(p["frame_sha256"]) == 64 for p in record["panels"])
        assert record["stem"].startswith(record["set_name"] + "-") and len(record["composite_sha256"]) == 64
        assert record["caption"]["backend"] == "template"
    config = tomllib.loads((out / "dataset.toml").read_text())
    subset = config["datasets"][0]["subsets"][0]
    assert os.path.isabs(subset["image_dir"]) and subset["image_dir"] == str((out / "images").resolve())
    assert config["datasets"][0]["resolution"] == [128, 96] and config["datasets"][0]["enable_bucket"] is False
    assert subset["caption_extension"] == ".txt"
    toolkit = yaml.safe_load((out / "ai_toolkit.yaml").read_text())
    process = toolkit["config"]["process"][0]
    assert process["datasets"][0]["folder_path"] == str((out / "images").resolve())
    assert process["network"] == {"type": "lora", "linear": 16, "linear_alpha": 16}  # the reference's choices kept
    reference = yaml.safe_load((ROOT / "mvic" / "export" / "ai_toolkit_4views.yaml").read_text())["config"]["process"][
        0
    ]
    assert process["train"] == reference["train"] and process["save"] == reference["save"]
    assert process["model"]["name_or_path"] == "black-forest-labs/FLUX.1-dev"
    assert (out / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.relative_to(out).as_posix() for p in (out / "images").iterdir()) == sorted(
        [r["image_file"] for r in records] + [r["caption_file"] for r in records]
    )
    assert {p.suffix for p in (out / "images").iterdir()} == {".png", ".txt"}
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("captioner_trigger", ["", "oldword"])
def test_the_savers_trigger_leads_the_captions_a_captioner_wrote(tmp_path, captioner_trigger):
    """Both shipped dataset workflows run a captioner before SaveICLoRADataset: its trigger must still apply."""
    captioner = mvic_module("captions.captioner")
    captioned, _ = captioner.caption_composites(
        make(tmp_path / "src", ["mug", "shoe"]), captioner.CaptionSettings(trigger=captioner_trigger)
    )
    before = {c.set_name: c.caption.text for c in captioned.items}
    out = tmp_path / "ds"
    dataset.save_dataset(captioned, out, trigger="mvstyle")
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    for record in records:
        caption = (out / record["caption_file"]).read_text()
        assert caption.startswith("mvstyle [FOUR-VIEWS] ") and "oldword" not in caption
        assert caption.removeprefix("mvstyle ") == before[record["set_name"]].removeprefix(f"{captioner_trigger} ")


def test_the_savers_trigger_goes_before_free_text_captions_once(tmp_path):
    datatypes = mvic_module("datatypes")
    built = make(tmp_path / "src", ["mug", "shoe"])
    texts = ["a mug on a table", "mvstyle a shoe"]
    items = [c.with_caption(datatypes.Caption(text=t, backend="manual")) for c, t in zip(built.items, texts)]
    out = tmp_path / "ds"
    dataset.save_dataset(datatypes.Composites(items=items, skipped=[]), out, trigger="mvstyle")
    written = sorted(
        (out / r["caption_file"]).read_text()
        for r in map(json.loads, (out / "metadata.jsonl").read_text().splitlines())
    )
    assert written == ["mvstyle a mug on a table", "mvstyle a shoe"]


def test_no_saver_trigger_leaves_a_captioners_caption_as_it_is(tmp_path):
    captioner = mvic_module("captions.captioner")
    captioned, _ = captioner.caption_composites(
        make(tmp_path / "src", ["mug"]), captioner.CaptionSettings(trigger="tok")
    )
    out = tmp_path / "ds"
    dataset.save_dataset(captioned, out)
    record = json.loads((out / "metadata.jsonl").read_text().splitlines()[0])
    assert (out / record["caption_file"]).read_text() == captioned.items[0].caption.text


def test_rerun_rewrites_nothing(tmp_path):
    comps = make(tmp_path / "src", ["a", "b", "c"])
    out = tmp_path / "ds"
    dataset.save_dataset(comps, out)
    before = {k: v for k, v in snapshot(out).items() if k.startswith("images/")}
    report = dataset.save_dataset(comps, out)
    after = {k: v for k, v in snapshot(out).items() if k.startswith("images/")}
    assert before == after and report.written == [] and len(report.unchanged) == 3


def test_stems_survive_adding_and_dropping_sets(tmp_path):
    out = tmp_path / "ds"
    dataset.save_dataset(make(tmp_path / "src", ["a", "b", "c"]), out)
    stems = {
        json.loads(l)["set_name"]: json.loads(l)["stem"] for l in (out / "metadata.jsonl").read_text().splitlines()
    }
    b_caption = out / "images" / f"{stems['b']}.txt"
    b_caption.write_text(
        "[FOUR-VIEWS] edited by a person; [TOP-LEFT] x; [TOP-RIGHT] y; [BOTTOM-LEFT] z; [BOTTOM-RIGHT] w."
    )
    # Drop "a", add "0first" (sorts before everything): running numbers would shift; stems must not.
    (tmp_path / "src" / "a").rename(tmp_path / "gone")
    report = dataset.save_dataset(make(tmp_path / "src", ["0first"]), out)
    new = {json.loads(l)["set_name"]: json.loads(l)["stem"] for l in (out / "metadata.jsonl").read_text().splitlines()}
    assert new["b"] == stems["b"] and new["c"] == stems["c"] and "a" not in new
    assert b_caption.read_text().startswith("[FOUR-VIEWS] edited by a person")
    assert report.moved_to_removed == [stems["a"]] and (out / "removed" / f"{stems['a']}.txt").is_file()


def test_edited_caption_is_kept_unless_told(tmp_path):
    comps = make(tmp_path / "src", ["a"])
    out = tmp_path / "ds"
    dataset.save_dataset(comps, out)
    (caption,) = (out / "images").glob("*.txt")
    caption.write_text("my careful caption")
    report = dataset.save_dataset(comps, out)
    assert caption.read_text() == "my careful caption" and report.captions_kept == [f"images/{caption.name}"]
    record = json.loads((out / "metadata.jsonl").read_text())
    assert record["caption"]["edited_by_person"] is True
    dataset.save_dataset(comps, out)  # still detected as edited on the next run
    assert caption.read_text() == "my careful caption"
    dataset.save_dataset(comps, out, overwrite_edited_captions=True)
    assert caption.read_text().startswith("[FOUR-VIEWS] ")


def test_changed_frames_rewrite_only_their_composite(tmp_path):
    comps = make(tmp_path / "src", ["a", "b"])
    out = tmp_path / "ds"
    dataset.save_dataset(comps, out)
    before = snapshot(out)
    from PIL import Image

    Image.new("RGB", (96, 64), (255, 0, 0)).save(tmp_path / "src" / "a" / "frame1.jpg")
    report = dataset.save_dataset(
        composites_mod.build_composites(loading.load_multiview_sets("folder", tmp_path / "src", 4), LAYOUT), out
    )
    after = snapshot(out)
    changed = sorted(k for k in after if k.startswith("images/") and after[k] != before.get(k))
    assert len(report.written) == 1 and changed == [f"images/{report.written[0]}.png"]


def test_sd_scripts_own_loader_accepts_the_export(tmp_path):
    """Acceptance 4: sd-scripts' dataset-config loader finds every image and caption."""
    paths = sd_scripts_paths()
    if paths is None:
        pytest.skip(SKIP_REASON)
    checkout, python = paths
    out = tmp_path / "ds ü"
    dataset.save_dataset(make(tmp_path / "src", ["a", "b", "c"]), out)
    result = subprocess.run(
        [python, str(ROOT / "tests" / "sd_dataset_check.py"), str(checkout), str(out / "dataset.toml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = json.loads(result.stdout.split("RESULT ", 1)[1])
    records = [json.loads(l) for l in (out / "metadata.jsonl").read_text().splitlines()]
    assert sorted(i["path"] for i in found["images"]) == sorted(str((out / r["image_file"]).resolve()) for r in records)
    for image in found["images"]:
        assert (
            image["caption"].strip()
            and image["caption"]
            == (out / "images" / (os.path.basename(image["path"]).rsplit(".", 1)[0] + ".txt")).read_text()
        )
    assert found["bucket"] == [False]
