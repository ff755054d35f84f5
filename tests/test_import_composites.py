"""Issue 14.1: a folder of finished IC-LoRA composites + captions becomes a dataset that trains.

The composites are made here the way they come from elsewhere: uneven sizes, seams a few
pixels off the exact fractions, captions in two marker styles ([FOUR-VIEWS]/[TOP-LEFT]… and
[MOVIE-SHOTS]/[SCENE-n]), Mac leftovers (`._*`, `.DS_Store`) beside them.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from fixtures_composites import BAG_CAPTION, BAGS, FILMS, smooth_panel, write_bags, write_composite, write_films
from hypothesis import given, settings
from hypothesis import strategies as st
from packload import ROOT, mvic_module
from PIL import Image
from sdscripts_env import SKIP_REASON, sd_scripts_paths
from trainer_data import TINY_T5

seams = mvic_module("seams")
markers = mvic_module("markers")
importing = mvic_module("importing")
loading = mvic_module("loading")
layout_mod = mvic_module("layout")
captioner = mvic_module("captions.captioner")
cli = mvic_module("cli")

FILM_STYLE = ["--marker-prefix", "[MOVIE-SHOTS]", "--panel-marker", "[SCENE-{n}]"]


def true_cuts(sizes: list[int]) -> list[int]:
    return list(np.cumsum(sizes)[:-1])


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def panels_of(folder, record) -> list[np.ndarray]:
    layout = record["layout"]
    return layout_mod.split(read(folder / record["image_file"]), layout["rows"], layout["cols"])


def records_of(folder) -> dict[str, dict]:
    return {r["set_name"]: r for r in map(json.loads, (folder / "metadata.jsonl").read_text().splitlines())}


# --------------------------------------------------------------------------- seams


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_seams_are_found_a_few_pixels_off_the_exact_fractions(tmp_path, fmt):
    for name, written in {**write_films(tmp_path / "f", fmt), **write_bags(tmp_path / "b", fmt)}.items():
        image = read(written.image)
        if name in FILMS:
            rows, cols, want = 3, 1, true_cuts(FILMS[name][1])
        else:
            rows, cols, want = 2, 2, true_cuts(BAGS[name][1]) + true_cuts(BAGS[name][0])
        _, cuts = seams.panel_boxes(image, rows, cols)
        assert [c.position for c in cuts] == want, name
        assert all(c.found for c in cuts)
    assert [c.nominal for c in seams.panel_boxes(read(tmp_path / "f" / f"film1.{fmt}"), 3, 1)[1]] == [114, 227]


def test_where_no_seam_shows_the_remainder_is_spread():
    flat = np.full((301, 100, 3), 90, np.uint8)
    boxes, cuts = seams.panel_boxes(flat, 3, 1)
    assert [b - t for t, b, _, _ in boxes] == [100, 101, 100] and not any(c.found for c in cuts)


@st.composite
def our_composites(draw):
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pw, ph = 16 * draw(st.integers(2, 6)), 16 * draw(st.integers(2, 6))
    divider = draw(st.sampled_from([0, 0, 1, 2, 6]))
    layout = layout_mod.CompositeLayout(rows, cols, pw, ph, divider, (255, 255, 255))
    fit = draw(st.sampled_from(layout_mod.FIT_MODES))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    sources = [
        Image.fromarray(smooth_panel(int(rng.integers(20, 200)), int(rng.integers(20, 200)), seed + i))
        for i in range(layout.count)
    ]
    return layout, [np.asarray(layout_mod.fit_panel(s, pw, ph, fit, (0, 0, 0))) for s in sources]


@settings(max_examples=40, deadline=None)
@given(our_composites())
def test_tolerant_split_is_the_exact_inverse_on_our_own_composites(case):
    layout, panels = case
    composite = layout_mod.compose(panels, layout)
    tolerant = seams.split_tolerant(composite, layout.rows, layout.cols)
    exact = layout_mod.split(composite, layout.rows, layout.cols)
    assert all(np.array_equal(a, b) for a, b in zip(tolerant, exact))


# --------------------------------------------------------------------------- captions


def test_the_layout_comes_from_known_markers_or_the_given_pattern():
    four = markers.caption_layout(BAG_CAPTION)
    assert four.grids == ((2, 2),) and four.markers.prefix == "[FOUR-VIEWS]" and four.markers.panels[0] == "[TOP-LEFT]"
    film = "[MOVIE-SHOTS] a day, [SCENE-1] dawn, [SCENE-2] noon, [SCENE-3] dusk."
    with pytest.raises(ValueError, match=r"not a known marker table .*give the panel marker pattern \[SCENE-\{n\}\]"):
        markers.caption_layout(film)
    assert markers.caption_layout(film, markers.MarkerStyle("", "[SCENE-{n}]")).grids == ((1, 3), (3, 1))
    assert markers.caption_layout("[THREE-VIEWS] x [TOP] a [MIDDLE] b [BOTTOM] c").grids == ((3, 1),)


@pytest.mark.parametrize(
    "caption, style, message",
    [
        ("just words", ("", ""), "has no \\[MARKERS\\]"),
        ("[FOUR-VIEWS] x [TOP] a [MIDDLE] b [BOTTOM] c", ("", ""), "starts with \\[FOUR-VIEWS\\] but names 3"),
        ("[X] x [TOP] a [TOP] b", ("", ""), "\\[TOP\\] more than once"),
        ("[X] x [LEFT] a [RIGHT]", ("", ""), "no words after \\[RIGHT\\]"),
        ("[MOVIE-SHOTS] x [SCENE-1] a [SCENE-2] b", ("[FILM]", "[SCENE-{n}]"), "not with the marker prefix \\[FILM\\]"),
        (
            "[MOVIE-SHOTS] x [SHOT-1] a [SHOT-2] b",
            ("", "[SCENE-{n}]"),
            "the pattern \\[SCENE-\\{n\\}\\] makes \\[SCENE-1\\] \\[SCENE-2\\]",
        ),
    ],
)
def test_captions_that_do_not_fit_a_layout_say_why(caption, style, message):
    with pytest.raises(ValueError, match=message):
        markers.caption_layout(caption, markers.MarkerStyle(*style))


def test_the_template_captioner_keeps_imported_captions(tmp_path):
    write_bags(tmp_path)
    imported = importing.build_imported_composites(loading.load_multiview_sets("composites", tmp_path))
    captioned, report = captioner.caption_composites(imported, captioner.CaptionSettings(trigger="mvstyle"))
    assert [c.caption.text for c in captioned.items] == [(tmp_path / f"{n}.txt").read_text() for n in BAGS]
    assert report.kept == 3 and "3 kept their own caption" in report.text()


# --------------------------------------------------------------------------- the CLI, end to end


def build(*args) -> int:
    return cli.main(["build", *args])


def test_stacked_films_import_word_for_word_and_refit_least(tmp_path, capsys):
    films = write_films(tmp_path / "films")
    out = tmp_path / "ds"
    args = ["--source", "composites", "--input", str(tmp_path / "films"), "--out", str(out), "--grid", "3x1"]
    assert build(*args, *FILM_STYLE) == 0
    printed = capsys.readouterr().out
    assert "imported 3 composite(s) as 3x1, panels 256x112" in printed and "3 kept their own caption" in printed
    assert "._" not in printed and "DS_Store" not in printed
    records = records_of(out)
    assert sorted(records) == sorted(FILMS)
    for name, record in records.items():
        # Captions byte for byte; the layout and the caption's own markers recorded.
        assert (out / record["caption_file"]).read_bytes() == films[name].image.with_suffix(".txt").read_bytes()
        assert record["caption"]["backend"] == "imported"
        assert record["markers"] == {"prefix": "[MOVIE-SHOTS]", "panels": ["[SCENE-1]", "[SCENE-2]", "[SCENE-3]"]}
        assert record["layout"] | {"divider_width": 0} == {
            "rows": 3,
            "cols": 1,
            "panel_width": 256,
            "panel_height": 112,
            "width": 256,
            "height": 336,
            "divider_width": 0,
        }
        # Each panel is its own scene (cut at the real seam), trimmed around its centre where it was at most
        # 15 px too large, else fitted: exactly what refitting the true panel gives (PNG: lossless).
        for got, true in zip(panels_of(out, record), films[name].panels):
            assert np.array_equal(got, importing.refit_panel(true, 256, 112)), name
    trimmed = [p for w in films.values() for p in w.panels if 256 <= p.shape[1] < 272 and 112 <= p.shape[0] < 128]
    assert len(trimmed) >= 3  # some panels kept their pixels exactly
    toml = (out / "dataset.toml").read_text()
    assert "resolution = [256, 336]" in toml and "enable_bucket = false" in toml


def test_four_view_grids_import_from_the_known_markers_alone(tmp_path, capsys):
    bags = write_bags(tmp_path / "bags", fmt="jpg")
    out = tmp_path / "ds"
    assert build("--input", str(tmp_path / "bags"), "--out", str(out)) == 0  # auto: composites; grid from the markers
    assert "imported 3 composite(s) as 2x2, panels 128x128" in capsys.readouterr().out
    for name, record in records_of(out).items():
        assert (out / record["caption_file"]).read_text() == bags[name].caption
        assert record["markers"]["prefix"] == "[FOUR-VIEWS]"
        for got, true in zip(panels_of(out, record), bags[name].panels):
            # JPEG-decoded: close, not equal. A panel cut at the wrong line would hold a strip of its neighbour.
            assert np.abs(got.astype(int) - importing.refit_panel(true, 128, 128).astype(int)).mean() < 3, name


def test_the_orientation_comes_from_the_seams_when_the_markers_allow_both(tmp_path, capsys):
    write_films(tmp_path / "films")
    assert build("--input", str(tmp_path / "films"), "--out", str(tmp_path / "ds"), *FILM_STYLE) == 0
    assert "as 3x1" in capsys.readouterr().out


def test_side_by_side_grid_for_stacked_scenes_is_refused_with_the_fix(tmp_path, capsys):
    write_films(tmp_path / "films")
    assert build("--input", str(tmp_path / "films"), "--out", str(tmp_path / "ds"), "--grid", "1x3", *FILM_STYLE) == 2
    assert (
        "its panels meet as 3x1 (stacked), not 1x3 (side by side): set the grid (rows x cols) to 3x1"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "ds").exists()


def test_unknown_markers_name_the_pattern_to_give(tmp_path, capsys):
    write_films(tmp_path / "films")
    assert build("--input", str(tmp_path / "films"), "--out", str(tmp_path / "ds")) == 2
    err = capsys.readouterr().err
    assert "film1.png, film2.png, film3.png: its caption has the panel markers [SCENE-1] [SCENE-2] [SCENE-3]" in err
    assert "give the panel marker pattern [SCENE-{n}]" in err


def test_a_panel_size_that_would_crop_most_of_each_panel_is_refused(tmp_path, capsys):
    write_films(tmp_path / "films")
    assert (
        build("--input", str(tmp_path / "films"), "--out", str(tmp_path / "ds"), "--panel", "128x128", *FILM_STYLE) == 2
    )
    assert "set the panel size to 0 to keep their own (256x112)" in capsys.readouterr().err
    assert (
        build("--input", str(tmp_path / "films"), "--out", str(tmp_path / "ds"), "--panel", "512x224", *FILM_STYLE) == 0
    )


def test_composites_that_cannot_be_used_are_skipped_and_named(tmp_path, capsys):
    folder = tmp_path / "films"
    write_films(folder)
    write_composite(folder, "nocaption", [270], [115, 115, 115], None, 7)
    write_composite(folder, "empty", [270], [115, 115, 115], "  \n", 8)
    write_composite(folder, "grid", [135, 135], [170, 171], BAG_CAPTION, 9)
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "broken.txt").write_text("[MOVIE-SHOTS] x [SCENE-1] a [SCENE-2] b [SCENE-3] c")
    assert build("--input", str(folder), "--out", str(tmp_path / "ds"), "--source", "composites", *FILM_STYLE) == 0
    out = capsys.readouterr().out
    assert "skipped nocaption.png: no caption nocaption.txt beside it" in out
    assert "skipped empty.png: caption empty.txt is empty" in out
    assert "skipped grid.png: its caption starts with [FOUR-VIEWS], not with the marker prefix [MOVIE-SHOTS]" in out
    assert "skipped broken.png: " in out and "not a readable image" in out
    assert sorted(records_of(tmp_path / "ds")) == sorted(FILMS)


def test_one_layout_per_dataset(tmp_path, capsys):
    folder = tmp_path / "mixed"
    write_bags(folder)
    write_composite(folder, "tall", [128], [128, 128, 128], "[THREE-VIEWS] x [TOP] a [MIDDLE] b [BOTTOM] c", 5)
    assert build("--input", str(folder), "--out", str(tmp_path / "ds")) == 0
    assert "skipped tall.png: is 3x1, the others are 2x2: one layout per dataset" in capsys.readouterr().out


# --------------------------------------------------------------------------- it trains as it is


def test_sd_scripts_own_loader_accepts_the_imported_dataset(tmp_path):
    paths = sd_scripts_paths()
    if paths is None:
        pytest.skip(SKIP_REASON)
    checkout, python = paths
    write_films(tmp_path / "films")
    out = tmp_path / "ds"
    assert build("--input", str(tmp_path / "films"), "--out", str(out), *FILM_STYLE) == 0
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
    assert len(found["images"]) == 3 and found["bucket"] == [False]
    for image in found["images"]:
        caption_file = (out / "images" / os.path.basename(image["path"])).with_suffix(".txt")
        assert image["caption"] == caption_file.read_text().strip()  # sd-scripts strips the final newline
        assert image["caption"].startswith("[MOVIE-SHOTS] ") and Image.open(image["path"]).size == (256, 336)


@pytest.mark.skipif(sd_scripts_paths() is None, reason=SKIP_REASON)
def test_the_imported_dataset_trains_as_it_is(tmp_path):
    """A real (tiny) sd-scripts run on the imported films: 2 steps at 128x192 on CPU."""
    import tiny_models as tm

    arguments, trainer, environment = (mvic_module(f"training.{m}") for m in ("arguments", "trainer", "environment"))
    folder = tmp_path / "films"
    folder.mkdir()
    for i, heights in enumerate(([66, 62, 65], [64, 64, 64]), start=1):
        write_composite(
            folder,
            f"film{i}",
            [135],
            heights,
            f"[MOVIE-SHOTS] day {i}, [SCENE-1] dawn, [SCENE-2] noon, [SCENE-3] dusk.",
            i,
        )
    dataset = tmp_path / "ds"
    assert build("--input", str(folder), "--out", str(dataset), "--grid", "3x1", *FILM_STYLE) == 0
    checkout, python = sd_scripts_paths()
    models = arguments.FluxModelFiles(
        flux=tm.tiny_flux(), clip_l=tm.tiny_clip_l(), t5xxl=tm.zero_t5xxl(), ae=tm.tiny_ae()
    )
    settings = arguments.TrainingSettings(
        dataset_dir=dataset, models=models, run_dir=tmp_path / "run", output_name="films", steps=2, extra_args=TINY_T5
    )
    result = trainer.train_lora(
        settings, environment.TrainerEnvironment(checkout.resolve(), python), tmp_path / "loras", "films", "cpu"
    )
    meta = mvic_module("flux_files").safetensors_header(result.lora_path)["__metadata__"]
    assert json.loads(meta["mvic_layout"]) == {"rows": 3, "cols": 1, "panel_width": 128, "panel_height": 64}
    assert json.loads(meta["mvic_markers"]) == {
        "prefix": "[MOVIE-SHOTS]",
        "panels": ["[SCENE-1]", "[SCENE-2]", "[SCENE-3]"],
    }
    assert result.losses and result.losses[-1][0] == 2 and all(np.isfinite(loss) for _, loss in result.losses)


# --------------------------------------------------------------------------- the nodes


def test_loader_and_grid_nodes_import_composites(tmp_path, monkeypatch):
    from packload import node_class

    monkeypatch.setenv("MVIC_SETTINGS", str(tmp_path / "settings.json"))
    monkeypatch.setenv("MVIC_ALLOWED_FOLDERS", str(tmp_path))  # outside ComfyUI's input/: allowed on this machine
    films = write_films(tmp_path / "films")
    mv_sets, preview, report = node_class("MVIC_MultiViewLoader").execute(
        "composites", str(tmp_path / "films"), 4, "auto", 0
    )
    assert report.startswith("3 set(s) loaded") and tuple(preview.shape) == (3, 256, 256, 3)
    grid = node_class("MVIC_CompositeGrid")
    composites, images, text = grid.execute(
        mv_sets, 3, 1, 0, 0, "crop", marker_prefix="[MOVIE-SHOTS]", panel_marker="[SCENE-{n}]"
    )
    assert tuple(images.shape) == (3, 336, 256, 3) and "imported 3 composite(s) as 3x1, panels 256x112" in text
    assert [c.caption.text for c in composites.items] == [films[n].caption for n in FILMS]
    with pytest.raises(ValueError, match=r"set the grid \(rows x cols\) to 1x3 \(side by side\) or 3x1 \(stacked\)"):
        grid.execute(mv_sets, 2, 2, 0, 0, "crop", marker_prefix="[MOVIE-SHOTS]", panel_marker="[SCENE-{n}]")
    sample = node_class("MVIC_MultiViewLoader").execute("sample", "", 4, "auto", 1)[0]
    with pytest.raises(ValueError, match="0 keeps the size of imported composites only"):
        grid.execute(sample, 2, 2, 0, 0, "crop")


def _copy_films(comfyui, sub: str) -> dict:
    return write_films(comfyui.base_dir / "input" / sub)


def test_real_comfyui_imports_composites_keeping_their_captions(comfyui):
    films = _copy_films(comfyui, "films_import")
    style = {"marker_prefix": "[MOVIE-SHOTS]", "panel_marker": "[SCENE-{n}]"}
    prompt = {
        "1": {
            "class_type": "MVIC_MultiViewLoader",
            "inputs": {"source": "composites", "path": "films_import", "views": 4, "selection": "auto", "max_sets": 0},
        },
        "2": {
            "class_type": "MVIC_CompositeGrid",
            "inputs": {
                "mv_sets": ["1", 0],
                "rows": 3,
                "cols": 1,
                "panel_width": 0,
                "panel_height": 0,
                "fit": "crop",
                **style,
            },
        },
        "3": {
            "class_type": "MVIC_GeminiCaptioner",
            "inputs": {"composites": ["2", 0], "backend": "template", "model": ""},
        },
        "4": {
            "class_type": "MVIC_SaveICLoRADataset",
            "inputs": {"composites": ["3", 0], "folder": "imported_films", "image_format": "png"},
        },
    }
    comfyui.run_prompt(prompt, timeout=300)
    out = comfyui.base_dir / "output" / "imported_films"
    records = records_of(out)
    assert sorted(records) == sorted(FILMS)
    for name, record in records.items():
        assert (out / record["caption_file"]).read_bytes() == films[name].image.with_suffix(".txt").read_bytes()
        assert (
            record["layout"]["rows"] == 3
            and record["layout"]["panel_width"] == 256
            and record["caption"]["backend"] == "imported"
        )
        for got, true in zip(panels_of(out, record), films[name].panels):
            assert np.array_equal(got, importing.refit_panel(true, 256, 112))
    prompt["2"]["inputs"].update(rows=1, cols=3)
    prompt["4"]["inputs"]["folder"] = "imported_films_wrong"
    with pytest.raises(AssertionError, match=r"its panels meet as 3x1 \(stacked\), not 1x3 \(side by side\)"):
        comfyui.run_prompt(prompt, timeout=300)


def test_real_comfyui_split_composite_cuts_at_the_real_seams(comfyui):
    films = _copy_films(comfyui, ".")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "film1.png"}},
        "2": {"class_type": "MVIC_SplitComposite", "inputs": {"image": ["1", 0], "rows": 3, "cols": 1}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "film1_split"}},
    }
    entry = comfyui.run_prompt(prompt, timeout=300)
    files = [comfyui.base_dir / "output" / i["subfolder"] / i["filename"] for i in entry["outputs"]["3"]["images"]]
    assert len(files) == 3
    # Panels 115, 111 and 115 rows high, cut at rows 115 and 226 (the thirds are 113.7 and 227.3),
    # trimmed around their centres to 111 rows.
    for path, true in zip(files, films["film1"].panels):
        top = (true.shape[0] - 111) // 2
        assert np.abs(read(path).astype(int) - true[top : top + 111].astype(int)).max() <= 1
