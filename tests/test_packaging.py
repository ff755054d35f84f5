"""Issue 14.6: `pip install .` gives an `mvic` command that works from any folder, and installing
the core as `mvic` changes nothing for ComfyUI, which imports the pack folder by path (`<pack>.mvic`).

The install test builds the wheel from a copy of this checkout with the test environment's
setuptools (no network), installs it into a fresh venv without dependencies, and lends that venv
the test environment's packages (numpy, Pillow, …) through a .pth file placed after its own."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from packload import PACK_NAME, ROOT

IGNORED = shutil.ignore_patterns(
    ".venv",
    ".git",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    "build",
    "*.egg-info",
    "docs",
    "benchmarks",
    "iclora_demo",
    "mvic_runs",
    "mvic_samples",
    "loras",
    "mvic_config.json",
)


def test_the_wheel_lists_every_package_of_the_core():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mvic").rglob("__init__.py")}
    assert listed == on_disk | {"mvic.trainers"}, "add the new package to [tool.setuptools] packages in pyproject.toml"
    assert config["project"]["scripts"] == {"mvic": "mvic.cli:main"}


def _run(command, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, **kw)
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the wheel of this checkout installed; returns (venv, home)."""
    pytest.importorskip("setuptools", minversion="77")
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "checkout"
    shutil.copytree(ROOT, source, ignore=IGNORED, symlinks=False)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(tmp / "wheels"),
            str(source),
        ]
    )
    (wheel,) = (tmp / "wheels").glob("*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])
    own = _run([str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"]).stdout.strip()
    Path(own, "zz_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    home = tmp / "home"
    home.mkdir()
    return venv, home


def _env(home: Path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "MVIC_CONFIG", "MVIC_SETTINGS", "XDG_CONFIG_HOME")
    }
    return {**env, "HOME": str(home)}


def test_the_mvic_command_runs_the_demo_from_any_folder(installed, tmp_path):
    venv, home = installed
    elsewhere = tmp_path / "somewhere else"
    elsewhere.mkdir()
    result = _run([str(venv / "bin" / "mvic"), "demo", "--out", "my demo"], cwd=elsewhere, env=_env(home))
    assert "6 composite(s) written" in result.stdout
    out = elsewhere / "my demo"
    assert len(list((out / "images").glob("*.png"))) == 6 and (out / "dataset.toml").is_file()
    assert (out / "images").is_dir() and not (elsewhere / "iclora_demo").exists()
    usage = _run([str(venv / "bin" / "mvic"), "--help"], cwd=elsewhere, env=_env(home)).stdout
    assert usage.startswith("usage: mvic ")


def test_the_installed_core_finds_its_trainer_scripts_and_keeps_its_config_in_the_home_folder(installed, tmp_path):
    venv, home = installed
    code = textwrap.dedent("""
        import json, mvic
        from mvic.settings import cli_settings_path
        from mvic import files as e
        print(json.dumps({"core": mvic.__file__, "installed": e.INSTALLED, "trainers": str(e.TRAINERS_DIR),
                          "launcher": (e.TRAINERS_DIR / "launch_sd_scripts.py").is_file(),
                          "tokenizer": (e.TOKENIZERS_DIR / "google_t5-v1_1-xxl" / "tokenizer.json").is_file(),
                          "config": str(cli_settings_path())}))
    """)
    found = json.loads(_run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_env(home)).stdout)
    assert found["core"].startswith(str(venv)) and found["installed"] is True
    assert found["trainers"].startswith(str(venv)) and found["launcher"] and found["tokenizer"]
    assert found["config"] == str(home / ".config" / "mvic" / "settings.json")


def test_comfyui_still_imports_the_pack_by_path_when_mvic_is_installed(installed, tmp_path):
    """The nodes must reach the pack's own core (`<pack>.mvic`), never the installed `mvic`."""
    venv, home = installed
    if not os.environ.get("COMFYUI_DIR"):
        pytest.skip("needs ComfyUI's comfy_api: set COMFYUI_DIR to a ComfyUI checkout")
    code = textwrap.dedent(f"""
        import importlib.util, json, sys
        sys.path.append({os.environ["COMFYUI_DIR"]!r})  # the nodes' comfy_api
        spec = importlib.util.spec_from_file_location({PACK_NAME!r}, {str(ROOT / "__init__.py")!r},
                                                      submodule_search_locations=[{str(ROOT)!r}])
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        import asyncio  # registered as ComfyUI registers them
        nodes = asyncio.run(asyncio.run(module.comfy_entrypoint()).get_node_list())
        loader = next(n for n in nodes if n.GET_SCHEMA().node_id == "MVIC_MultiViewLoader")
        print(json.dumps({{"top_level_mvic": "mvic" in sys.modules, "loader": sys.modules[loader.__module__].__name__,
                           "core": sys.modules[{PACK_NAME!r} + ".mvic"].__file__}}))
    """)
    found = json.loads(_run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=_env(home)).stdout)
    assert found["top_level_mvic"] is False and found["loader"].startswith(PACK_NAME + ".nodes")
    assert found["core"] == str(ROOT / "mvic" / "__init__.py")
