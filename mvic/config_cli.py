"""`python -m mvic config …`: show and edit this machine's local settings (mvic/settings.py)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from .settings import (
    ENDPOINT_BACKENDS,
    Endpoint,
    LocalSettings,
    SettingsError,
    check_name,
    load_settings,
    save_settings,
)

SCALAR_KEYS = ("default_trainer", "caption_cache_dir")


def add_commands(commands) -> None:
    config = commands.add_parser(
        "config", help="show or edit this machine's local settings (what a workflow cannot decide)"
    )
    config.add_argument(
        "--file", default="", help="settings file to use (default: $MVIC_SETTINGS or ~/.config/mvic/settings.json)"
    )
    actions = config.add_subparsers(dest="config_action", required=True)
    actions.add_parser("show", help="the settings in use and where they live")
    scalar = actions.add_parser("set", help=f"set one of: {', '.join(SCALAR_KEYS)}")
    scalar.add_argument("key", choices=SCALAR_KEYS)
    scalar.add_argument("value")
    endpoint = actions.add_parser("add-endpoint", help="a captioning server the captioner may send images to")
    endpoint.add_argument("name")
    endpoint.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:11434/v1 for Ollama")
    endpoint.add_argument("--backend", choices=ENDPOINT_BACKENDS, default="openai-compatible")
    endpoint.add_argument(
        "--key-env", action="append", default=[], help="environment variable holding this server's key"
    )
    endpoint.add_argument("--key-file", default="", help="file holding only this server's key")
    actions.add_parser("remove-endpoint").add_argument("name")
    trainer = actions.add_parser(
        "add-trainer", help="an sd-scripts checkout LoRATrainer may run (its code is fingerprinted now)"
    )
    trainer.add_argument("name")
    trainer.add_argument("--sd-scripts", required=True, help="the kohya-ss/sd-scripts checkout")
    trainer.add_argument("--python", required=True, help="the interpreter with sd-scripts' requirements")
    trainer.add_argument("--default", action="store_true", help="make it the default (the first one always is)")
    actions.add_parser("remove-trainer").add_argument("name")
    actions.add_parser("allow-folder", help="let nodes read data under this absolute folder").add_argument("folder")
    actions.add_parser("disallow-folder").add_argument("folder")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(path=args.file or None)
    action = args.config_action
    if action == "show":
        print(describe(settings))
        return 0
    if action == "set":
        settings = dataclasses.replace(settings, **{args.key: args.value})
    elif action == "add-endpoint":
        settings = _with_endpoint(settings, args)
    elif action == "remove-endpoint":
        if args.name not in settings.endpoints:
            raise SettingsError(f"no configured endpoint named {args.name!r} in {settings.path}")
        settings = dataclasses.replace(
            settings, endpoints={k: v for k, v in settings.endpoints.items() if k != args.name}
        )
    elif action in ("add-trainer", "remove-trainer"):
        from .training.checkout import with_trainer, without_trainer

        if action == "add-trainer":
            settings = with_trainer(settings, args.name, args.sd_scripts, args.python, args.default)
        else:
            settings = without_trainer(settings, args.name)
    elif action in ("allow-folder", "disallow-folder"):
        settings = _with_folder(settings, Path(args.folder), allow=action == "allow-folder")
    print(f"wrote {save_settings(settings)}")
    return 0


def _with_endpoint(settings: LocalSettings, args: argparse.Namespace) -> LocalSettings:
    name = check_name(args.name, "endpoint")
    if name in settings.all_endpoints() and name not in settings.endpoints:
        raise SettingsError(f"endpoint {name!r} is built in; give yours another name")
    if not args.base_url.startswith(("http://", "https://")):
        raise SettingsError(f"--base-url {args.base_url!r}: give an http:// or https:// address")
    key_file = str(Path(args.key_file).expanduser().resolve()) if args.key_file else ""
    endpoint = Endpoint(name, args.backend, args.base_url.rstrip("/"), tuple(args.key_env), key_file)
    return dataclasses.replace(settings, endpoints={**settings.endpoints, name: endpoint})


def _with_folder(settings: LocalSettings, folder: Path, allow: bool) -> LocalSettings:
    folder = folder.expanduser()
    if not folder.is_absolute():
        folder = folder.resolve()
    folders = [p for p in settings.allowed_folders if p != folder]
    if allow:
        if not folder.is_dir():
            raise SettingsError(f"{folder} is not a folder")
        folders.append(folder)
    return dataclasses.replace(settings, allowed_folders=tuple(folders))


def describe(settings: LocalSettings) -> str:
    lines = [f"settings file: {settings.path}" + ("" if settings.exists else " (not written yet: defaults)")]
    lines.append("  (inside ComfyUI, <ComfyUI user folder>/mvic/settings.json is used instead when it exists)")
    lines.append(
        "trainers:" if settings.trainers else "trainers: none (run `python -m mvic setup-trainer --sd-scripts DIR`)"
    )
    for name, t in settings.trainers.items():
        mark = " (default)" if name == settings.default_trainer else ""
        lines.append(f"  {name}{mark}: {t.sd_scripts_dir} with {t.python}")
    lines.append("captioning endpoints:")
    for name, e in settings.all_endpoints().items():
        keys = ", ".join(f"${v}{'' if os.environ.get(v) else ' (unset)'}" for v in e.key_env) or "no key"
        where = e.base_url or "the provider's official address"
        lines.append(f"  {name}: {e.backend} at {where}; key from {keys}" + (f" or {e.key_file}" if e.key_file else ""))
    folders = settings.readable_folders()
    lines.append("folders nodes may read besides ComfyUI's input/: " + (", ".join(map(str, folders)) or "none"))
    lines.append(f"caption cache: {settings.caption_cache_dir or '~/.cache/mvic/captions'}")
    return "\n".join(lines)
