"""Local settings, confined paths and file modes: the ground rules for untrusted workflows (issue 9)."""

import json
import os
import stat
import subprocess
import sys

import pytest
from packload import ROOT, mvic_module

paths = mvic_module("paths")
settings_mod = mvic_module("settings")
files = mvic_module("files")


@pytest.fixture
def base(tmp_path):
    folder = tmp_path / "input"
    (folder / "sets" / "a").mkdir(parents=True)
    return folder


def test_relative_input_stays_in_its_folder(base):
    assert paths.confined_input("sets/a", base, "path") == (base / "sets" / "a").resolve()


@pytest.mark.parametrize("text", ["../outside", "sets/../../outside", "/etc", "~/.ssh"])
def test_input_that_leaves_is_refused_with_the_fix(base, text):
    with pytest.raises(paths.PathNotAllowed) as err:
        paths.confined_input(text, base, "MultiViewLoader.path")
    assert "MultiViewLoader.path" in str(err.value)
    assert "python -m mvic config allow-folder" in str(err.value)


def test_symlink_out_of_the_input_folder_is_refused(base, tmp_path):
    private = tmp_path / "private"
    private.mkdir()
    (base / "link").symlink_to(private, target_is_directory=True)
    with pytest.raises(paths.PathNotAllowed, match="leaves"):
        paths.confined_input("link", base, "path")


def test_absolute_input_under_an_allowed_folder(base, tmp_path):
    data = tmp_path / "data" / "mvimgnet"
    data.mkdir(parents=True)
    assert paths.confined_input(str(data), base, "path", [tmp_path / "data"]) == data.resolve()
    # a link inside input/ to an allowed folder is fine too
    (base / "to_data").symlink_to(data, target_is_directory=True)
    assert paths.confined_input("to_data", base, "path", [tmp_path / "data"]) == data.resolve()


@pytest.mark.parametrize("text", ["/tmp/x", "../x", "a/../../x", "~/x", ""])
def test_outputs_never_leave_the_output_folder(tmp_path, text):
    with pytest.raises(paths.PathNotAllowed):
        paths.confined_output(text, tmp_path / "output", "SaveICLoRADataset.folder")


def test_output_through_a_link_that_leaves_is_refused(tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    (out / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(paths.PathNotAllowed, match="leaves"):
        paths.confined_output("elsewhere/ds", out, "folder")
    assert paths.confined_output("my_dataset", out, "folder") == (out / "my_dataset").resolve()


def test_settings_round_trip_and_builtins(tmp_path, monkeypatch):
    path = tmp_path / "settings.json"
    monkeypatch.setenv("MVIC_SETTINGS", str(path))
    empty = settings_mod.load_settings()
    assert not empty.exists and set(empty.all_endpoints()) == {"gemini", "openai"}
    endpoint = settings_mod.Endpoint("ollama", "openai-compatible", "http://127.0.0.1:11434/v1", ("OLLAMA_KEY",))
    written = settings_mod.LocalSettings(path=path, endpoints={"ollama": endpoint}, allowed_folders=(tmp_path,))
    settings_mod.save_settings(written)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it may name key files
    loaded = settings_mod.load_settings()
    assert loaded.endpoint("ollama") == endpoint
    assert loaded.readable_folders() == (tmp_path,)
    monkeypatch.setenv("MVIC_ALLOWED_FOLDERS", "/srv/a" + os.pathsep + "/srv/b")
    assert [str(p) for p in loaded.readable_folders()][1:] == ["/srv/a", "/srv/b"]
    with pytest.raises(settings_mod.SettingsError, match="no captioning endpoint named 'evil'"):
        loaded.endpoint("evil")


@pytest.mark.parametrize(
    "data, message",
    [
        ({"endpoints": {"gemini": {"backend": "gemini", "base_url": "http://evil"}}}, "built in"),
        ({"endpoints": {"x": {"backend": "shell"}}}, "backend must be"),
        ({"allowed_folders": ["relative/dir"]}, "absolute"),
        ([], "JSON object"),
    ],
)
def test_bad_settings_name_the_file(tmp_path, data, message):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(data))
    with pytest.raises(settings_mod.SettingsError, match=message) as err:
        settings_mod.load_settings(path=path)
    assert str(path) in str(err.value)


def test_comfyui_user_folder_file_wins_when_present(tmp_path, monkeypatch):
    monkeypatch.delenv("MVIC_SETTINGS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    user = tmp_path / "user"
    assert settings_mod.settings_path(user) == tmp_path / "xdg" / "mvic" / "settings.json"
    (user / "mvic").mkdir(parents=True)
    (user / "mvic" / "settings.json").write_text("{}")
    assert settings_mod.settings_path(user) == user / "mvic" / "settings.json"


def test_atomic_writes_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        files.atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_config_cli_writes_what_show_prints(tmp_path):
    env = {**os.environ, "MVIC_SETTINGS": str(tmp_path / "s.json")}

    def mvic(*args):
        return subprocess.run(
            [sys.executable, "-m", "mvic", "config", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )

    assert mvic("add-endpoint", "ollama", "--base-url", "http://127.0.0.1:11434/v1/").returncode == 0
    assert mvic("allow-folder", str(tmp_path)).returncode == 0
    shown = mvic("show").stdout
    assert "ollama: openai-compatible at http://127.0.0.1:11434/v1; key from no key" in shown
    assert str(tmp_path) in shown
    refused = mvic("add-endpoint", "gemini", "--base-url", "http://evil.example")
    assert refused.returncode == 2 and "built in" in refused.stderr
