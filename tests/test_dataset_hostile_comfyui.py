"""Issue 9 and 10, the dataset side, through a REAL ComfyUI: hostile workflows submitted to /prompt
(loader paths, saver folders, shared datasets, marker patterns, captions) and a CLI build racing a
ComfyUI build. After each: nothing appeared, changed or vanished outside ComfyUI's output folder."""

import json
import os
import subprocess
import sys
import time

import pytest
from comfy_harness import ComfyServer, comfyui_paths
from dataset_builds import build_args, dataset_state, differences, make_sources, run_build, start_build
from fixtures_data import write_folder_sets
from hostile import FileScan, refusal
from packload import ROOT

ALLOW = "python -m mvic config allow-folder"


class World:
    """A ComfyUI with its own settings file, and a 'home' folder it must never touch."""

    def __init__(self, root):
        self.root = root
        self.settings = root / "settings.json"
        self.home = root / "home"
        self.base = root / "comfy"
        write_folder_sets(self.home / "photos", ["private_a", "private_b"], frames=4)
        (self.home / ".ssh").mkdir()
        (self.home / ".ssh" / "id_rsa").write_text("-----BEGIN PRIVATE KEY-----\n")
        (self.home / "unrelated").mkdir()
        (self.home / "unrelated" / "dataset.toml").write_text("# someone else's dataset\n")
        self.server = ComfyServer(
            *comfyui_paths(), base_dir=self.base, env={"MVIC_SETTINGS": str(self.settings), "MVIC_ALLOWED_FOLDERS": ""}
        )
        write_folder_sets(self.base / "input" / "sets", ["mug", "shoe"], frames=4)

    @property
    def output(self):
        return self.base / "output"

    def scan(self) -> FileScan:
        return FileScan([self.root])

    def assert_nothing_outside_output(self, scan: FileScan) -> None:
        ignore = [self.output, self.base / "user", self.base / "temp", self.server.log_path]
        assert scan.changes(ignore=ignore) == {"added": [], "changed": [], "removed": []}

    def mvic_config(self, *args) -> subprocess.CompletedProcess:
        env = {**os.environ, "MVIC_SETTINGS": str(self.settings)}
        return subprocess.run(
            [sys.executable, "-m", "mvic", "config", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    if comfyui_paths() is None:
        pytest.skip("real-ComfyUI test: set COMFYUI_DIR (and COMFYUI_PYTHON); source /work/team/env.sh")
    world = World(tmp_path_factory.mktemp("dataset_hostile"))
    world.server.start()
    yield world
    world.server.stop()


def workflow(path="sets", source="folder", folder="ds", grid=None, save=None) -> dict:
    return {
        "1": {
            "class_type": "MVIC_MultiViewLoader",
            "inputs": {"source": source, "path": path, "views": 4, "selection": "auto", "max_sets": 0},
        },
        "2": {
            "class_type": "MVIC_CompositeGrid",
            "inputs": {
                "mv_sets": ["1", 0],
                "rows": 2,
                "cols": 2,
                "panel_width": 64,
                "panel_height": 64,
                "fit": "crop",
                **(grid or {}),
            },
        },
        "3": {
            "class_type": "MVIC_SaveICLoRADataset",
            "inputs": {"composites": ["2", 0], "folder": folder, "image_format": "png", **(save or {})},
        },
    }


def report_text(entry) -> str:
    return entry["outputs"]["3"]["text"][0]


@pytest.mark.parametrize("path", ["ABS:photos", "../../home/photos", "sets/../../../home/photos", "LINK"])
def test_loader_paths_outside_input_are_refused_with_how_to_allow_them(world, path):
    if path == "LINK":
        link = world.base / "input" / "innocent"
        if not link.is_symlink():
            link.symlink_to(world.home / "photos", target_is_directory=True)
        path = "innocent"
    path = str(world.home / "photos") if path == "ABS:photos" else path
    scan = world.scan()
    error = refusal(world.server, workflow(path=path, folder="never"))
    assert "MultiViewLoader.path" in error and ALLOW in error and json.dumps(path)[1:-1] in error
    assert not (world.output / "never").exists()
    world.assert_nothing_outside_output(scan)


def test_a_locally_allowed_folder_is_read_and_a_dangling_link_is_harmless(world):
    """With `python -m mvic config allow-folder`, the same absolute path works (IS_CHANGED does not
    trip over a dangling link in it either)."""
    photos = world.home / "photos"
    (photos / "private_a" / "dangling.jpg").symlink_to(world.home / "nothing_here.jpg")
    try:
        assert world.mvic_config("allow-folder", str(photos)).returncode == 0
        scan = world.scan()
        entry = world.server.run_prompt(workflow(path=str(photos), folder="allowed_ds"), timeout=300)
        assert "2 composite(s) written" in report_text(entry)
        assert len(list((world.output / "allowed_ds" / "images").glob("*.png"))) == 2
        world.assert_nothing_outside_output(scan)
        assert "IS_CHANGED" not in world.server.log() and "WARNING: [Errno" not in world.server.log()
    finally:
        (photos / "private_a" / "dangling.jpg").unlink()
        world.settings.unlink(missing_ok=True)


@pytest.mark.parametrize("folder", ["../../x", "../home/unrelated", "ABS", "~/x", "LINK/ds", ".", "a/../../x"])
def test_saver_folders_that_leave_output_are_refused(world, folder):
    if folder == "ABS":
        folder = str(world.home / "unrelated")
    elif folder.startswith("LINK"):
        link = world.output / "LINK"
        if not link.is_symlink():
            link.symlink_to(world.home, target_is_directory=True)
    scan = world.scan()
    error = refusal(world.server, workflow(folder=folder))
    assert "SaveICLoRADataset.folder" in error
    assert (world.home / "unrelated" / "dataset.toml").read_text() == "# someone else's dataset\n"
    world.assert_nothing_outside_output(scan)


def test_a_shared_dataset_naming_outside_files_moves_and_deletes_nothing_outside(world):
    """A dataset folder from someone else, put into output/: its metadata.jsonl names the user's key
    (absolute and through ..), and a caption is a link to it. The saver runs, nothing outside moves."""
    shared = world.output / "shared"
    (shared / "images").mkdir(parents=True)
    key = world.home / ".ssh" / "id_rsa"
    (shared / "images" / "stolen.txt").symlink_to(key)
    base = {
        "composite_sha256": "0" * 64,
        "caption_sha256": "0" * 64,
        "caption": {},
        "layout": {},
        "markers": {},
        "fit": "crop",
        "set_name": "x",
        "category": "x",
        "panels": [],
    }
    records = [
        {**base, "stem": "key", "image_file": str(key), "caption_file": "../../../home/.ssh/id_rsa"},
        {**base, "stem": "stolen", "image_file": "images/stolen.png", "caption_file": "images/stolen.txt"},
    ]
    (shared / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    scan = world.scan()
    entry = world.server.run_prompt(workflow(folder="shared"), timeout=300)
    text = report_text(entry)
    assert "ignoring a record" in text and "2 composite(s) written" in text
    assert key.read_text() == "-----BEGIN PRIVATE KEY-----\n" and (shared / "images" / "stolen.txt").is_symlink()
    assert not (shared / "removed").exists()
    assert "PRIVATE KEY" not in (shared / "ai_toolkit.yaml").read_text()
    world.assert_nothing_outside_output(scan)


def test_overwrite_edited_captions_keeps_a_dated_copy_of_each_edit(world):
    world.server.run_prompt(workflow(folder="edits"), timeout=300)
    captions = sorted((world.output / "edits" / "images").glob("*.txt"))
    for number, caption in enumerate(captions):
        caption.write_text(f"my edit {number}")
    entry = world.server.run_prompt(workflow(folder="edits", save={"overwrite_edited_captions": True}), timeout=300)
    copies = sorted((world.output / "edits" / "replaced").iterdir())
    assert sorted(p.read_text() for p in copies) == ["my edit 0", "my edit 1"]
    for caption in captions:
        assert caption.read_text().startswith("[FOUR-VIEWS] ")
        assert f"edited caption images/{caption.name} (kept as replaced/" in report_text(entry)


def test_a_marker_pattern_with_a_huge_width_is_refused_at_once(world):
    scan = world.scan()
    started = time.monotonic()
    error = refusal(world.server, workflow(folder="markers", grid={"panel_marker": "[V{n:0>50000000}]"}))
    assert time.monotonic() - started < 60
    assert "panel_marker" in error and "width of at most 3" in error
    assert not (world.output / "markers").exists()
    world.assert_nothing_outside_output(scan)


def test_a_huge_trigger_is_refused(world):
    error = refusal(world.server, workflow(folder="trigger", save={"trigger": "x" * 1_000_000}))
    assert "trigger" in error and "at most 200 characters" in error
    assert not (world.output / "trigger" / "images").exists()


def test_the_sample_source_never_writes_where_its_path_points(world):
    target = world.home / "sample_here"
    scan = world.scan()
    entry = world.server.run_prompt(workflow(source="sample", path=str(target), folder="sample_ds"), timeout=300)
    assert "6 composite(s) written" in report_text(entry)
    assert not target.exists()
    world.assert_nothing_outside_output(scan)


def test_a_cli_build_and_a_comfyui_build_into_one_folder(world, tmp_path):
    """Acceptance 2 (CLI + ComfyUI queue): while the CLI builds into output/race, the queued ComfyUI
    build into the same folder stops with a clear message; the folder is the CLI's complete build."""
    sources = make_sources(tmp_path / "sets", sets=24)
    reference = tmp_path / "reference" / "race"
    big = ["--panel", "512x512"]  # long enough that the ComfyUI build arrives while the CLI holds the folder
    assert run_build(build_args(sources, reference, *big)).returncode == 0
    out = world.output / "race"
    cli = start_build(build_args(sources, out, *big))
    while not (out / ".mvic-build.lock").exists():
        assert cli.poll() is None, cli.communicate()
        time.sleep(0.005)
    error = refusal(world.server, workflow(source="sample", folder="race"))
    assert cli.wait(300) == 0, cli.communicate()
    assert "another build is writing into" in error and "python -m mvic build (pid" in error
    assert differences(dataset_state(out), dataset_state(reference)) == []
