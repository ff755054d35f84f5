"""Local settings: this machine's answers to what a shared workflow may never decide.

A workflow file is untrusted data. Which program runs (an sd-scripts checkout and its
Python), which host receives images and with which key (captioning endpoints), and which
folders outside ComfyUI's own may be read, are decided here: a JSON file the user edits or
writes with `python -m mvic config …` / `setup-trainer`, plus environment variables.
Widgets only pick among the names configured here.

The file (the first that applies):
    $MVIC_SETTINGS
    inside ComfyUI: <ComfyUI user folder>/mvic/settings.json, when it exists
    $XDG_CONFIG_HOME/mvic/settings.json (default ~/.config/mvic/settings.json)
No file at all is fine: the built-in endpoints and ComfyUI's own folders still work.
Environment: MVIC_ALLOWED_FOLDERS (folders, os.pathsep-separated) adds to allowed_folders.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .files import atomic_write_text

SETTINGS_ENV = "MVIC_SETTINGS"
ALLOWED_FOLDERS_ENV = "MVIC_ALLOWED_FOLDERS"
SETTINGS_VERSION = 1
ENDPOINT_BACKENDS = ("gemini", "openai-compatible")
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class SettingsError(ValueError):
    """The settings file is unreadable or says something impossible; the message names the file."""


@dataclass(frozen=True)
class Endpoint:
    """A captioning server and the only key that may be sent to it."""

    name: str
    backend: str  # "gemini" or "openai-compatible"
    base_url: str = ""  # "" = the provider's official address
    key_env: tuple[str, ...] = ()  # environment variables holding this endpoint's key, first set wins
    key_file: str = ""  # or a local file holding it (set on this machine, never by a workflow)
    builtin: bool = False

    def to_json(self) -> dict:
        return {
            "backend": self.backend,
            "base_url": self.base_url,
            "key_env": list(self.key_env),
            "key_file": self.key_file,
        }


BUILTIN_ENDPOINTS = {
    "gemini": Endpoint("gemini", "gemini", "", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), builtin=True),
    "openai": Endpoint("openai", "openai-compatible", "https://api.openai.com/v1", ("OPENAI_API_KEY",), builtin=True),
}


@dataclass(frozen=True)
class TrainerCheckout:
    """An sd-scripts checkout this machine runs, its Python, and its fingerprint at setup."""

    name: str
    sd_scripts_dir: Path
    python: str
    fingerprint: str = ""  # recorded by setup-trainer / config add-trainer; checked before launch

    def to_json(self) -> dict:
        return {"sd_scripts_dir": str(self.sd_scripts_dir), "python": self.python, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class LocalSettings:
    path: Path  # where they were (or will be) stored
    exists: bool = False
    trainers: dict[str, TrainerCheckout] = field(default_factory=dict)
    default_trainer: str = ""
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # configured ones; see all_endpoints()
    allowed_folders: tuple[Path, ...] = ()  # from the file; see readable_folders()
    caption_cache_dir: str = ""  # "" = ~/.cache/mvic/captions

    def all_endpoints(self) -> dict[str, Endpoint]:
        return {**BUILTIN_ENDPOINTS, **self.endpoints}

    def endpoint(self, name: str) -> Endpoint:
        endpoints = self.all_endpoints()
        if name not in endpoints:
            raise SettingsError(
                f"no captioning endpoint named {name!r} on this machine (known: {', '.join(endpoints)}). "
                f"Add it locally: `python -m mvic config add-endpoint {name} --base-url URL` ({self.path})"
            )
        return endpoints[name]

    def readable_folders(self) -> tuple[Path, ...]:
        extra = [Path(p).expanduser() for p in os.environ.get(ALLOWED_FOLDERS_ENV, "").split(os.pathsep) if p.strip()]
        return (*self.allowed_folders, *extra)

    def trainer(self, name: str = "") -> TrainerCheckout | None:
        return self.trainers.get(name or self.default_trainer)

    def to_json(self) -> dict:
        return {
            "version": SETTINGS_VERSION,
            "trainers": {name: t.to_json() for name, t in self.trainers.items()},
            "default_trainer": self.default_trainer,
            "endpoints": {name: e.to_json() for name, e in self.endpoints.items()},
            "allowed_folders": [str(p) for p in self.allowed_folders],
            "caption_cache_dir": self.caption_cache_dir,
        }


def cli_settings_path() -> Path:
    if os.environ.get(SETTINGS_ENV, "").strip():
        return Path(os.environ[SETTINGS_ENV]).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME", "").strip() or Path.home() / ".config"
    return Path(config_home) / "mvic" / "settings.json"


def settings_path(comfy_user_dir: str | Path | None = None) -> Path:
    """The file in use: $MVIC_SETTINGS, else ComfyUI's (when running inside it and present), else the CLI's."""
    if not os.environ.get(SETTINGS_ENV, "").strip() and comfy_user_dir:
        in_comfy = Path(comfy_user_dir) / "mvic" / "settings.json"
        if in_comfy.is_file():
            return in_comfy
    return cli_settings_path()


def check_name(name: str, what: str) -> str:
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise SettingsError(f"{what} name {name!r}: use 1-64 lower-case letters, digits, '-', '_' or '.'")
    return name


def load_settings(comfy_user_dir: str | Path | None = None, path: str | Path | None = None) -> LocalSettings:
    path = Path(path) if path else settings_path(comfy_user_dir)
    if not path.is_file():
        return LocalSettings(path=path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(
            f"settings file {path}: cannot read it ({exc}); fix it or write it anew with `python -m mvic config`"
        ) from None
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path}: expected a JSON object")
    try:
        return _from_json(path, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise SettingsError(f"settings file {path}: {exc}") from None


def _from_json(path: Path, data: dict) -> LocalSettings:
    trainers = {
        check_name(name, "trainer"): TrainerCheckout(
            name, Path(t["sd_scripts_dir"]), str(t["python"]), str(t.get("fingerprint", ""))
        )
        for name, t in (data.get("trainers") or {}).items()
    }
    endpoints = {}
    for name, e in (data.get("endpoints") or {}).items():
        check_name(name, "endpoint")
        if name in BUILTIN_ENDPOINTS:
            raise ValueError(f"endpoint {name!r} is built in; give yours another name")
        if e.get("backend") not in ENDPOINT_BACKENDS:
            raise ValueError(f"endpoint {name!r}: backend must be one of {', '.join(ENDPOINT_BACKENDS)}")
        key_env = e.get("key_env") or ()
        key_env = (key_env,) if isinstance(key_env, str) else tuple(key_env)
        endpoints[name] = Endpoint(name, e["backend"], str(e.get("base_url", "")), key_env, str(e.get("key_file", "")))
    folders = tuple(Path(p).expanduser() for p in data.get("allowed_folders") or ())
    relative = [str(p) for p in folders if not p.is_absolute()]
    if relative:
        raise ValueError(f"allowed_folders must be absolute paths: {', '.join(relative)}")
    return LocalSettings(
        path=path,
        exists=True,
        trainers=trainers,
        default_trainer=str(data.get("default_trainer", "")),
        endpoints=endpoints,
        allowed_folders=folders,
        caption_cache_dir=str(data.get("caption_cache_dir", "")),
    )


def save_settings(settings: LocalSettings) -> Path:
    """Written atomically, readable only by the user: it may name key files."""
    settings.path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings.path, json.dumps(settings.to_json(), indent=2) + "\n")
    os.chmod(settings.path, 0o600)
    return settings.path
