"""The pre-launch probe of the sd-scripts environment is remembered while nothing it depends on changes
(mvic/training/probe_cache.py), and asked again as soon as something does.

Real sd-scripts tier: a throw-away venv reads the real sd-scripts venv's packages (a .pth file) and
counts its own starts (a second .pth line runs at every start of that interpreter), so the test sees
whether the probe's Python ran without touching the real environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from packload import mvic_module
from sdscripts_env import SKIP_REASON, sd_scripts_paths

environment = mvic_module("training.environment")

pytestmark = [
    pytest.mark.skipif(sd_scripts_paths() is None, reason=SKIP_REASON),
    pytest.mark.skipif(not Path("/proc/sys/kernel/random/boot_id").is_file(), reason="Linux only (boot id)"),
]


def site_packages(python: str) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip())


@pytest.fixture
def counted_env(tmp_path, monkeypatch):
    """A venv on the real sd-scripts venv's packages whose every start appends a line to starts.log."""
    checkout, real_python = sd_scripts_paths()
    base = subprocess.run(
        [real_python, "-c", "import sys; print(sys._base_executable)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = site_packages(python)
    (site / "real.pth").write_text(f"{site_packages(real_python)}\n")
    log = tmp_path / "starts.log"
    (site / "count.pth").write_text(f"import pathlib; pathlib.Path({str(log)!r}).open('a').write('start\\n')\n")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    starts = lambda: len(log.read_text().splitlines()) if log.exists() else 0  # noqa: E731
    return environment.TrainerEnvironment(Path(checkout).resolve(), python), site, starts


def check(env):
    return environment.check_environment(env, load_parser=False, reuse=True)


def probed(starts, action) -> bool:
    """Whether `action` started the venv's Python (the probe may start it more than once: imports spawn)."""
    before = starts()
    result = action()
    assert result.ok, result.text()
    return starts() > before


def test_an_unchanged_environment_is_probed_once(counted_env, tmp_path):
    env, _, starts = counted_env
    first = check(env)
    assert first.ok, first.text()
    assert starts() > 0 and list((tmp_path / "cache" / "mvic" / "probes").glob("*.json"))
    assert not probed(starts, lambda: check(env)), "the probe's Python ran again for an unchanged environment"
    second = check(env)
    assert (second.packages, second.gpus, second.problems) == (first.packages, first.gpus, [])


def test_installing_a_package_or_changing_the_gpu_selection_probes_again(counted_env, monkeypatch):
    env, site, starts = counted_env
    assert probed(starts, lambda: check(env))
    (site / "newpackage-1.0.dist-info").mkdir()  # what pip install leaves behind
    assert probed(starts, lambda: check(env))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert probed(starts, lambda: check(env))
    assert not probed(starts, lambda: check(env))


def test_check_trainer_always_probes_and_a_broken_environment_is_never_remembered(counted_env, tmp_path):
    env, site, starts = counted_env
    for _ in range(2):  # without reuse (check-trainer) the probe always runs
        assert probed(starts, lambda: environment.check_environment(env, load_parser=False))
    (site / "real.pth").unlink()  # torch & co. no longer import
    for _ in range(2):
        before = starts()
        report = check(env)
        assert not report.ok and "torch does not import" in report.text() and starts() > before
