"""Every bad input named in the issue: a clear error or a reported skip, never a crash
of the whole run, and nothing written outside the output folder."""

import subprocess
import sys

import numpy as np
import pytest
from fixtures_data import write_folder_sets, write_frames
from packload import ROOT, mvic_module, node_class

loading = mvic_module("loading")
composites = mvic_module("composites")
dataset = mvic_module("export.dataset")
layout_mod = mvic_module("layout")
datatypes = mvic_module("datatypes")
images = mvic_module("images")
sample_data = mvic_module("sources.sample")

LAYOUT = layout_mod.CompositeLayout(2, 2, 32, 32)


def build(root, views=4, **kw):
    sets = loading.load_multiview_sets("folder", root, views, **kw)
    return sets, composites.build_composites(sets, LAYOUT)


def test_missing_root_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist.*does not exist"):
        loading.load_multiview_sets("folder", tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="empty"):
        loading.load_multiview_sets("folder", "  ")


def test_empty_root_is_a_clear_node_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MVIC_SETTINGS", str(tmp_path / "settings.json"))
    monkeypatch.setenv("MVIC_ALLOWED_FOLDERS", str(tmp_path))  # outside ComfyUI an absolute path needs allowing too
    loader = node_class("MVIC_MultiViewLoader")
    with pytest.raises(ValueError, match="no usable set"):
        loader.execute("folder", str(tmp_path), 4, "auto", 0)


def test_set_with_too_few_frames_is_skipped_and_reported(tmp_path):
    write_folder_sets(tmp_path, ["good_a", "good_b"], frames=6)
    write_frames(tmp_path / "short", 3)
    sets, result = build(tmp_path)
    assert [s.name for s in sets.sets] == ["good_a", "good_b"]
    assert "short" in result.report() and "fewer than the 4 views" in result.report()
    assert len(result.items) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_or_truncated_jpeg_skips_only_its_set(tmp_path, damage):
    write_folder_sets(tmp_path, ["fine", "broken"], frames=4, size=(256, 192))
    victim = tmp_path / "broken" / "frame1.jpg"
    data = victim.read_bytes()
    victim.write_bytes(b"not a jpeg at all" * 10 if damage == "garbage" else data[: len(data) // 2])
    _, result = build(tmp_path)
    assert [c.set_name for c in result.items] == ["fine"]
    assert "broken" in result.report() and "frame1.jpg" in result.report()


def test_huge_jpeg_is_decoded_reduced_without_memory_blow_up(tmp_path):
    from PIL import Image

    path = tmp_path / "huge.jpg"
    Image.new("L", (20000, 10000), 128).save(path, quality=50)  # 200 Mpx: over PIL's bomb limit
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from packload import mvic_module\n"
        "images = mvic_module('images')\n"
        # The pack's import (ComfyUI's comfy_api, torch) is resident before decoding: count what decoding adds.
        "rss = int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])\n"
        f"a = images.load_rgb({str(path)!r}, min_size=(512, 512))\n"
        f"b = images.load_rgb({str(path)!r})\n"
        # VmHWM: ru_maxrss would include the parent's peak (inherited across fork+exec).
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(a.size, b.size, a.mode, (int(hwm) - rss) // 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    peak_mib = int(out.stdout.split()[-1])
    assert out.stdout.startswith("(2500, 1250) (10000, 5000)")  # 1/8 for the panel; 1/2 to fit the pixel cap
    assert "RGB" in out.stdout
    assert peak_mib < 400, f"peak RSS {peak_mib} MiB over the imports"  # a full decode would need 600+ MiB


def test_non_image_files_are_ignored(tmp_path):
    write_folder_sets(tmp_path, ["a"], frames=4)
    for name in ("notes.txt", ".DS_Store", "meta.json", "Thumbs.db"):
        (tmp_path / "a" / name).write_bytes(b"x")
    (tmp_path / "README.md").write_text("hi")
    sets, result = build(tmp_path)
    assert len(sets.sets[0].frames) == 4 and len(result.items) == 1


def test_unicode_and_spaces_in_paths(tmp_path):
    root = tmp_path / "Meine Daten ☕"
    write_folder_sets(root, ["Tasse blau 1", "杯子 2"], frames=4)
    _, result = build(root)
    report = dataset.save_dataset(result, tmp_path / "Aus gabe ü")
    written = sorted(p.name for p in (tmp_path / "Aus gabe ü" / "images").glob("*.txt"))
    assert len(written) == 2 and report.written
    assert any(name.startswith("Tasse_blau_1-") for name in written) and any(
        name.startswith("杯子_2-") for name in written
    )


def test_set_names_with_dot_dot_cannot_escape_the_output_folder(tmp_path):
    image = np.zeros((32, 32, 3), np.uint8)
    evil = datatypes.Composite(
        set_name="../../escape/..",
        category="../etc",
        layout=layout_mod.CompositeLayout(1, 1, 32, 32),
        markers=mvic_module("markers").markers_for(1, 1),
        image=image,
        panels=[],
    )
    evil.panels.append(datatypes.PanelSource("../../escape/..", "x", str(tmp_path / "nowhere.jpg"), 0))
    out = tmp_path / "out"
    dataset.save_dataset(datatypes.Composites([evil]), out)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents]
    assert outside == []
    assert all(".." not in p.name for p in out.iterdir())


def test_malformed_colmap_falls_back_to_frame_order_with_a_warning(tmp_path):
    import shutil

    root = tmp_path / "mv"
    shutil.copytree(sample_data.ensure_sample_data(), root)
    images_bin = root / "7" / "a1" / "sparse" / "0" / "images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:-13])
    sets = loading.load_multiview_sets("mvimgnet", root, 4)
    broken = next(s for s in sets.sets if s.name == "7/a1")
    assert broken.selection == "frame_order" and not broken.has_poses
    assert "7/a1" in sets.report() and "COLMAP" in sets.report() and "images.bin" in sets.report()
    assert all(s.selection == "pose" for s in sets.sets if s.name != "7/a1")


def test_one_bad_set_in_a_hundred(tmp_path):
    write_folder_sets(tmp_path, [f"set{i:03d}" for i in range(100)], frames=4, size=(48, 48))
    (tmp_path / "set042" / "frame3.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    _, result = build(tmp_path)
    assert len(result.items) == 99
    assert "set042" in result.report() and "frame3.jpg" in result.report()
    report = dataset.save_dataset(result, tmp_path / "out")
    assert len(report.written) == 99 and "set042" in report.text()


@pytest.mark.parametrize("tokens", ["0", "600", "many"])
def test_headless_sampler_refuses_a_t5_length_it_cannot_use_before_loading_anything(tokens):
    files = ("--flux", "f", "--clip-l", "c", "--t5xxl", "t", "--ae", "a")  # never opened: refused first
    out = subprocess.run(
        [sys.executable, "-m", "mvic", "sample", *files, "--prompt", "a mug", "--t5-tokens", tokens],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert f"--t5-tokens: '{tokens}': give a whole number of tokens from 1 to 512" in out.stderr
