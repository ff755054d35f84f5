"""Issue 10, the dataset side: exports that survive kills, a full disk and a second build into
the same folder, and odd names; every case runs the real CLI or the real exporter on real files."""

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
import tomllib

import numpy as np
import pytest
from dataset_builds import (
    build_args,
    dataset_state,
    differences,
    edited_flags,
    kill_after,
    make_sources,
    run_build,
    start_build,
)
from fixtures_data import write_folder_sets, write_frames
from packload import ROOT, mvic_module, node_class

loading = mvic_module("loading")
composites_mod = mvic_module("composites")
dataset = mvic_module("export.dataset")
manifest = mvic_module("export.manifest")
layout_mod = mvic_module("layout")
# Names of the export's transaction files, spelled out so this file also runs (and fails) on older code.
LOCK_NAME, WORK_DIR, COMMIT = ".mvic-build.lock", ".mvic-build", "commit.json"
MAX_CAPTION_CHARS = 8000

LAYOUT = layout_mod.CompositeLayout(2, 2, 64, 48)
# Killed builds differ from the final one in what they write: other crops and captions, other
# format, other size (the "768 px image while dataset.toml says 512"), other markers.
VARIANTS = [
    ["--fit", "pad", "--trigger", "killedrun"],
    ["--format", "jpg"],
    ["--panel", "384x384"],
    ["--marker-prefix", "[MY-SET]", "--panel-marker", "[V{n}]", "--trigger", "other"],
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return make_sources(tmp_path_factory.mktemp("sources") / "sets")


@pytest.fixture(scope="module")
def clean(sources, tmp_path_factory):
    """The reference: build A into an empty folder."""
    out = tmp_path_factory.mktemp("clean") / "ds"
    done = run_build(build_args(sources, out))
    assert done.returncode == 0, done.stderr
    return dataset_state(out)


def test_interrupted_export_then_the_same_export_equals_a_clean_build(sources, clean, tmp_path):
    """The issue's case: a build killed half-way through its files, then the previous build again
    ('0 written, 400 unchanged' with leftovers of the killed run, their captions taken for edits)."""
    out = tmp_path / "ds"
    assert run_build(build_args(sources, out)).returncode == 0
    killed = start_build(build_args(sources, out, "--fit", "pad", "--trigger", "killedrun"), kill_at_rename=10)
    killed.wait(300)
    assert killed.returncode == -signal.SIGKILL
    again = run_build(build_args(sources, out))
    assert again.returncode == 0, again.stderr
    assert differences(dataset_state(out), clean) == []
    assert "edited caption" not in again.stdout and edited_flags(out) == 0


def test_builds_killed_at_20_random_points_then_a_normal_build(sources, clean, tmp_path, capsys):
    """Acceptance 1: SIGKILL at 20 random points (10 random times after the build locked the folder,
    10 random file renames), each followed by a normal build: the folder equals a clean build's
    (every image's pixels, every caption's text, manifest, configs), no caption is taken for an edit."""
    rng = random.Random(20)
    out = tmp_path / "ds"
    assert run_build(build_args(sources, out)).returncode == 0
    phases, outcomes = {}, []
    for trial in range(20):
        variant = VARIANTS[trial % len(VARIANTS)]
        was_killed, attempt, limit = False, 0, 40
        while not was_killed and attempt < 6:  # a build that finished first is retried with an earlier point
            if trial % 2 == 0:  # a random time after the build took the folder's lock
                process = start_build(build_args(sources, out, *variant))
                while not (out / LOCK_NAME).exists() and process.poll() is None:
                    time.sleep(0.002)
                was_killed = kill_after(process, rng.uniform(0.0, 1.2) / 2**attempt)
            else:  # a random file rename of the export
                limit = rng.randint(1, limit)
                process = start_build(build_args(sources, out, *variant), kill_at_rename=limit)
                process.wait(300)
                was_killed = process.returncode == -signal.SIGKILL
            attempt += 1
        phase = _phase(out, was_killed)
        phases[phase] = phases.get(phase, 0) + 1
        normal = run_build(build_args(sources, out))
        assert normal.returncode == 0, normal.stderr
        wrong = differences(dataset_state(out), clean)
        outcomes.append((trial, phase, len(wrong), edited_flags(out), "edited caption" in normal.stdout))
        assert wrong == [], f"trial {trial} ({phase}): differs from a clean build in {wrong[:10]}"
        assert edited_flags(out) == 0 and "kept" not in normal.stdout and "replaced" not in normal.stdout
    with capsys.disabled():
        print(
            f"\ncrash consistency: 20 kills by phase {phases}; after each normal build: "
            f"{sum(o[2] for o in outcomes)} differing files, {sum(o[3] for o in outcomes)} captions marked edited"
        )


def _phase(out, was_killed: bool) -> str:
    """Where the kill landed, judged by what it left."""
    work = out / WORK_DIR
    if not was_killed:
        return "finished before the kill"
    if (work / COMMIT).exists():
        return "after the commit point"
    if work.exists():
        return "staging"
    return "before the export"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a tmpfs needs root")
def test_full_disk_mid_build_changes_nothing_then_a_normal_build(sources, clean, tmp_path):
    """A build that runs out of space leaves the previous dataset intact (no 384 px image beside a
    256 px dataset.toml), says so, and the next build on a freed disk equals a clean one."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("this sandbox cannot mount a tmpfs")
    try:
        out = mount / "ds"
        first = run_build(build_args(sources, out))
        assert first.returncode == 0, first.stderr
        before = dataset_state(out)
        free = shutil.disk_usage(mount).free
        (mount / "filler").write_bytes(b"\0" * (free - 1_500_000))  # room for a few images only
        full = run_build(build_args(sources, out, "--panel", "384x384", "--fit", "pad"))
        assert (
            full.returncode == 2
            and "no space left" in full.stderr
            and "nothing in the dataset was changed" in full.stderr
        )
        assert "Traceback" not in full.stderr
        assert differences(dataset_state(out), before) == []
        assert not (out / WORK_DIR).exists()
        (mount / "filler").unlink()
        normal = run_build(build_args(sources, out))
        assert normal.returncode == 0, normal.stderr
        assert differences(dataset_state(out), clean) == [] and edited_flags(out) == 0
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_two_cli_builds_into_one_folder_end_as_one_complete_build(sources, tmp_path):
    """Acceptance 2: two CLIs at once; one stops with a clear message, the folder is one complete build."""
    references = {}
    for trigger in ("alpha", "beta"):
        reference = tmp_path / f"ref_{trigger}" / "ds"
        assert run_build(build_args(sources, reference, "--trigger", trigger)).returncode == 0
        references[trigger] = dataset_state(reference)
    out = tmp_path / "shared" / "ds"
    first = start_build(build_args(sources, out, "--trigger", "alpha"))
    second = start_build(build_args(sources, out, "--trigger", "beta"))
    results = [(p.wait(300), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    stopped = next(err for code, _, err in results if code == 2)
    assert (
        "another build is writing into" in stopped and "pid" in stopped and "host" in stopped and "started" in stopped
    )
    winner = "alpha" if results[0][0] == 0 else "beta"
    assert differences(dataset_state(out), references[winner]) == []


def test_a_second_build_can_wait_for_the_first(sources, tmp_path):
    reference = tmp_path / "ref" / "ds"
    assert run_build(build_args(sources, reference, "--trigger", "beta")).returncode == 0
    out = tmp_path / "shared" / "ds"
    first = start_build(build_args(sources, out, "--trigger", "alpha"))
    while not (out / LOCK_NAME).exists() and first.poll() is None:
        time.sleep(0.01)
    second = run_build(build_args(sources, out, "--trigger", "beta", "--wait-for-lock", "120"))
    assert first.wait(300) == 0 and second.returncode == 0, second.stderr
    assert differences(dataset_state(out), dataset_state(reference)) == []


def test_a_lock_left_by_a_killed_build_is_taken_over(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, sys.argv[1]); from mvic.export.transaction import BuildLock;"
            "BuildLock(__import__('pathlib').Path(sys.argv[2]), 'holder').acquire(); print('held', flush=True); "
            "time.sleep(600)",
            str(ROOT),
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    comps = _composites(tmp_path / "src", ["a"])
    with pytest.raises(RuntimeError, match=rf"holder \(pid {holder.pid} on host .*started"):
        dataset.save_dataset(comps, out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    report = dataset.save_dataset(comps, out)
    assert report.written and any("took over the lock" in note and str(holder.pid) in note for note in report.notes)
    assert not (out / LOCK_NAME).exists()


def _composites(root, names, frames=5):
    write_folder_sets(root, names, frames=frames)
    return composites_mod.build_composites(loading.load_multiview_sets("folder", root, 4), LAYOUT)


def test_a_file_name_that_is_not_utf8_is_skipped_and_named(tmp_path):
    """One set holds a frame whose name is Latin-1 bytes: that frame is skipped (reported with the
    bytes), the other sets complete and the dataset is written."""
    root = tmp_path / "src"
    write_folder_sets(root, ["good_a", "good_b"], frames=4)
    write_frames(root / "mixed", 4)
    os.rename(os.fsencode(root / "mixed" / "frame4.jpg"), os.fsencode(root / "mixed") + b"/caf\xe9.jpg")
    write_frames(root / "to_rename", 4)
    os.rename(os.fsencode(root / "to_rename"), os.fsencode(root) + b"/bad\xfeset")
    sets = loading.load_multiview_sets("folder", root, 4)
    assert sorted(s.name for s in sets.sets) == ["good_a", "good_b"]
    report = sets.report()
    assert "b'caf\\xe9.jpg'" in report and "not valid UTF-8" in report and "mixed" in report
    assert "b'bad\\xfeset'" in report
    out = tmp_path / "out"
    export = dataset.save_dataset(composites_mod.build_composites(sets, LAYOUT), out)
    assert len(export.written) == 2 and len(list((out / "images").glob("*.png"))) == 2


def test_cli_build_with_a_non_utf8_file_name_completes(tmp_path):
    root = make_sources(tmp_path / "src", sets=3)
    # "0..." sorts first, so the even pick of 4 of 5 frames would take it
    os.rename(os.fsencode(root / "set01" / "frame5.jpg"), os.fsencode(root / "set01") + b"/0\xff\xfe.jpg")
    done = run_build(build_args(root, tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "b'0\\xff\\xfe.jpg'" in done.stdout and "3 composite(s) written" in done.stdout


def test_an_input_root_whose_name_is_not_utf8_still_builds(tmp_path):
    root = os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9j\xe0")
    write_folder_sets(tmp_path / "plain", ["a", "b"], frames=4)
    os.rename(tmp_path / "plain", root)
    out = tmp_path / "out"
    report = dataset.save_dataset(
        composites_mod.build_composites(loading.load_multiview_sets("folder", root, 4), LAYOUT), out
    )
    assert len(report.written) == 2
    frames = [
        p["frame_path"]
        for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
        for p in json.loads(line)["panels"]
    ]
    assert all("d\\xe9j\\xe0" in f for f in frames)


def test_an_output_folder_name_that_is_not_utf8_is_refused_clearly(tmp_path):
    out = os.fsdecode(os.fsencode(tmp_path) + b"/out\xff")
    comps = _composites(tmp_path / "src", ["a"])
    with pytest.raises(ValueError, match=r"output folder b'.*out\\xff' is not valid UTF-8.*dataset.toml"):
        dataset.save_dataset(comps, out)
    assert not os.path.exists(out)
    done = run_build(["build", "--source", "folder", "--input", str(tmp_path / "src"), "--out", out])
    assert done.returncode == 2 and "not valid UTF-8" in done.stderr and "Traceback" not in done.stderr


def test_a_del_character_in_the_folder_name_gives_valid_toml(tmp_path):
    out = tmp_path / "data\x7fset"
    dataset.save_dataset(_composites(tmp_path / "src", ["a"]), out)
    config = tomllib.loads((out / "dataset.toml").read_text(encoding="utf-8"))
    assert config["datasets"][0]["subsets"][0]["image_dir"] == str((out / "images").resolve())
    import yaml

    toolkit = yaml.safe_load((out / "ai_toolkit.yaml").read_text(encoding="utf-8"))
    assert toolkit["config"]["process"][0]["datasets"][0]["folder_path"] == str((out / "images").resolve())


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_every_file_the_saver_writes_gets_the_umask_mode(tmp_path, umask, mode):
    comps = _composites(tmp_path / "src", ["a", "b"])
    out = tmp_path / "ds"
    old = os.umask(umask)
    try:
        dataset.save_dataset(comps, out, "jpg")
        (out / "images").joinpath(next(p.name for p in (out / "images").glob("*.txt"))).write_text("edited")
        dataset.save_dataset(comps, out, "png", overwrite_edited_captions=True)  # replaced/ + format switch
        dataset.save_dataset(
            composites_mod.build_composites(
                loading.load_multiview_sets("folder", tmp_path / "src", 4, max_sets=1), LAYOUT
            ),
            out,
        )
    finally:
        os.umask(old)
    written = [p for p in out.rglob("*") if p.is_file()]
    assert {p.parent.name for p in written} >= {"images", "removed", "ds"}
    assert {p.relative_to(out).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {
        p.relative_to(out).as_posix(): oct(mode) for p in written
    }


def test_is_changed_never_raises_on_a_dangling_symlink(tmp_path, monkeypatch):
    monkeypatch.setenv("MVIC_SETTINGS", str(tmp_path / "settings.json"))
    monkeypatch.setenv("MVIC_ALLOWED_FOLDERS", str(tmp_path))
    write_folder_sets(tmp_path / "sets", ["a"], frames=4)
    (tmp_path / "sets" / "a" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    loader = node_class("MVIC_MultiViewLoader")
    first = loader.fingerprint_inputs(source="folder", path=str(tmp_path / "sets"))
    assert isinstance(first, str) and first == loader.fingerprint_inputs(source="folder", path=str(tmp_path / "sets"))
    (tmp_path / "sets" / "a" / "gone.jpg").unlink()
    assert loader.fingerprint_inputs(source="folder", path=str(tmp_path / "sets")) != first
    assert loader.fingerprint_inputs(source="folder", path="/definitely/not/allowed").startswith("unusable path")


def test_every_file_is_checked_against_the_manifest(tmp_path):
    """An image changed on disk (not by us) is rewritten, the changed file kept in replaced/."""
    comps = _composites(tmp_path / "src", ["a", "b"])
    out = tmp_path / "ds"
    dataset.save_dataset(comps, out)
    image = sorted((out / "images").glob("*.png"))[0]
    from PIL import Image

    Image.new("RGB", (128, 96), (255, 0, 0)).save(image)
    report = dataset.save_dataset(comps, out)
    assert report.written == [image.stem] and len(report.unchanged) == 1
    assert np.array_equal(
        np.asarray(Image.open(image)), comps.items[[c.set_name for c in comps.items].index("a")].image
    )
    (kept,) = (out / "replaced").iterdir()
    assert kept.name.startswith(image.stem + ".") and np.asarray(Image.open(kept))[0, 0].tolist() == [255, 0, 0]
    assert f"kept as replaced/{kept.name}" in report.text()


def test_overwriting_edited_captions_keeps_each_edit(tmp_path):
    comps = _composites(tmp_path / "src", ["a", "b", "c"])
    out = tmp_path / "ds"
    dataset.save_dataset(comps, out)
    captions = sorted((out / "images").glob("*.txt"))
    for number, caption in enumerate(captions):
        caption.write_text(f"my careful edit {number}")
    report = dataset.save_dataset(comps, out, overwrite_edited_captions=True)
    copies = sorted((out / "replaced").iterdir())
    assert sorted(p.read_text() for p in copies) == [f"my careful edit {n}" for n in range(3)]
    for caption in captions:
        assert caption.read_text().startswith("[FOUR-VIEWS] ")
        (copy,) = [p for p in copies if p.name.startswith(caption.stem + ".")]
        assert f"edited caption images/{caption.name} (kept as replaced/{copy.name})" in report.text()


def test_captions_are_capped_and_cleaned(tmp_path):
    comps = _composites(tmp_path / "src", ["a"])
    caption = mvic_module("datatypes").Caption(text="[FOUR-VIEWS] x\x1b[31m\x00 " + "word " * 5000, backend="manual")
    comps.items[0] = comps.items[0].with_caption(caption)
    report = dataset.save_dataset(comps, tmp_path / "ds")
    (written,) = (tmp_path / "ds" / "images").glob("*.txt")
    text = written.read_text()
    assert len(text) <= MAX_CAPTION_CHARS and "\x1b" not in text and "\x00" not in text
    assert "shortened to 8000 characters" in report.text()
    with pytest.raises(ValueError, match="trigger .* characters"):
        dataset.save_dataset(comps, tmp_path / "ds2", trigger="x" * 100_000)


def test_a_manifest_naming_outside_files_touches_nothing_outside(tmp_path):
    """A shared dataset whose metadata.jsonl names files outside it: the saver neither moves nor
    deletes them, and read_manifest (the trainer's reader too) ignores those records."""
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "id_rsa").write_text("PRIVATE KEY")
    (outside / "notes.txt").write_text("mine")
    out = tmp_path / "shared_ds"
    (out / "images").mkdir(parents=True)
    (out / "images" / "linked.txt").symlink_to(outside / "notes.txt")
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
    hostile = [
        {**base, "stem": "k", "image_file": str(outside / "id_rsa"), "caption_file": "../home/notes.txt"},
        {**base, "stem": "../home/id_rsa", "image_file": "../home/id_rsa.png", "caption_file": "../home/id_rsa.txt"},
        {**base, "stem": "linked", "image_file": "images/linked.png", "caption_file": "images/linked.txt"},
    ]
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hostile))
    problems = []
    assert manifest.read_manifest(out, problems) == {} and len(problems) == 3
    report = dataset.save_dataset(_composites(tmp_path / "src", ["a"]), out)
    assert (outside / "id_rsa").read_text() == "PRIVATE KEY" and (outside / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in outside.iterdir()) == ["id_rsa", "notes.txt"]
    assert not (out / "removed").exists() and report.moved_to_removed == []
    assert "ignoring a record" in report.text()


def test_links_inside_the_dataset_folder_that_leave_it_are_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "ds"
    out.mkdir()
    (out / "images").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="images is a link"):
        dataset.save_dataset(_composites(tmp_path / "src", ["a"]), out)
    assert list(outside.iterdir()) == []


def test_a_hostile_commit_plan_cannot_reach_outside(tmp_path):
    """A shared folder's .mvic-build/commit.json naming outside paths is refused, not replayed."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "ds"
    (out / ".mvic-build").mkdir(parents=True)
    (out / ".mvic-build" / "commit.json").write_text(
        json.dumps({"steps": [["move", "../victim.txt", "removed/v.txt"]]})
    )
    with pytest.raises(ValueError, match="refusing a step"):
        dataset.save_dataset(_composites(tmp_path / "src", ["a"]), out)
    assert victim.read_text() == "keep me"


def test_the_readme_first_command_needs_no_settings(tmp_path):
    """`python -m mvic demo` on a machine with no settings file at all (nothing allowed, nothing configured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVIC_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    done = subprocess.run(
        [sys.executable, "-m", "mvic", "demo", "--out", str(tmp_path / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "6 composite(s) written" in done.stdout and not (tmp_path / "xdg").exists()
