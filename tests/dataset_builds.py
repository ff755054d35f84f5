"""Real `python -m mvic build` runs for the export tests: started, killed with SIGKILL at a
chosen point, and compared with a clean build file by file (pixels and caption text)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import yaml
from fixtures_data import write_folder_sets
from packload import ROOT

# Kills the build at its N-th os.replace (every file the exporter makes visible goes through one):
# a real SIGKILL at a reproducible point of the run, whatever the version of the exporter.
_KILL_AT_RENAME = """
import os, signal, sys
sys.path.insert(0, {root!r})
count, at = [0], int(os.environ["MVIC_TEST_KILL_AT_RENAME"])
real_replace = os.replace
def replace(*args, **kwargs):
    count[0] += 1
    if count[0] == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(*args, **kwargs)
os.replace = replace
from mvic.cli import main
sys.exit(main(sys.argv[1:]))
"""


def make_sources(root: Path, sets: int = 16) -> Path:
    return write_folder_sets(root, [f"set{i:02d}" for i in range(sets)], frames=5, size=(320, 240))


def build_args(source: Path, out: Path, *extra: str) -> list[str]:
    return ["build", "--source", "folder", "--input", str(source), "--out", str(out), "--panel", "256x256", *extra]


def run_build(args: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mvic", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, **kw
    )


def start_build(args: list[str], kill_at_rename: int = 0) -> subprocess.Popen:
    env = {**os.environ}
    if kill_at_rename:
        env["MVIC_TEST_KILL_AT_RENAME"] = str(kill_at_rename)
        command = [sys.executable, "-c", _KILL_AT_RENAME.format(root=str(ROOT)), *args]
    else:
        command = [sys.executable, "-m", "mvic", *args]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after(process: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL `process` after `seconds` unless it ended first; True when it was killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return process.returncode == -signal.SIGKILL


def dataset_state(folder: Path) -> dict:
    """Everything a trainer or a person sees in the folder, comparable between two folders:
    file list, decoded pixels of every image, text of every caption, the manifest, configs."""
    folder = folder.resolve()
    state = {
        "files": sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    }
    from PIL import Image

    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.suffix in (".png", ".jpg"):
            with Image.open(path) as image:
                state[relative] = (image.size, np.asarray(image.convert("RGB")).tobytes())
        elif path.suffix == ".txt":
            state[relative] = path.read_text(encoding="utf-8")
    manifest = folder / "metadata.jsonl"
    if manifest.is_file():
        state["metadata.jsonl"] = [json.loads(line) for line in manifest.read_text().splitlines()]
    toml = folder / "dataset.toml"
    if toml.is_file():
        state["dataset.toml"] = toml.read_text().replace(str(folder), "<DATASET>")
        tomllib.loads(toml.read_text())  # TOML 1.0 valid
    yaml_file = folder / "ai_toolkit.yaml"
    if yaml_file.is_file():
        state["ai_toolkit.yaml"] = yaml_file.read_text().replace(str(folder), "<DATASET>")
        yaml.safe_load(yaml_file.read_text())
    return state


def differences(state: dict, reference: dict) -> list[str]:
    keys = sorted(set(state) | set(reference))
    return [key for key in keys if state.get(key) != reference.get(key)]


def edited_flags(folder: Path) -> int:
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
    return sum(1 for r in records if r["caption"].get("edited_by_person"))
