"""An sd-scripts checkout's fingerprint: what setup recorded, checked again before each launch.

The code a launch runs from the checkout is the entry scripts plus the packages they import
(`library/`, `networks/`). Their SHA-256, file by file, is recorded in the local settings by
`python -m mvic setup-trainer` / `python -m mvic config add-trainer`; a checkout whose code
changed since then (an update, or something that wrote into it) is refused until the user
records it again. Nothing here runs the checkout's code.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from ..settings import LocalSettings, SettingsError, TrainerCheckout, check_name

ENTRY_SCRIPTS = ("flux_train_network.py", "train_network.py")
PACKAGES = ("library", "networks")
FINGERPRINT_VERSION = "v1"


class CheckoutChanged(RuntimeError):
    """The checkout's code is not what was recorded at setup."""


def fingerprinted_files(checkout: Path) -> list[Path]:
    """The entry scripts and every .py file under library/ and networks/ (links not followed out)."""
    files = [checkout / name for name in ENTRY_SCRIPTS if (checkout / name).is_file()]
    for package in PACKAGES:
        folder = checkout / package
        if folder.is_dir():
            files += sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)
    return files


def fingerprint(checkout: str | Path) -> str:
    """'v1:<sha256>' over (relative path, file hash) of the fingerprinted files."""
    checkout = Path(checkout)
    digest = hashlib.sha256()
    for path in fingerprinted_files(checkout):
        digest.update(path.relative_to(checkout).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return f"{FINGERPRINT_VERSION}:{digest.hexdigest()}"


def verify(checkout: Path, recorded: str, name: str, python: str) -> None:
    """Raise CheckoutChanged (naming the checkout and the command that records it anew)."""
    again = f"python -m mvic config add-trainer {name} --sd-scripts {checkout} --python {python}"
    if not recorded:
        raise CheckoutChanged(
            f"the sd-scripts checkout '{name}' ({checkout}) has no fingerprint in the local settings: "
            f"record it with `{again}`"
        )
    if fingerprint(checkout) != recorded:
        raise CheckoutChanged(
            f"the sd-scripts checkout '{name}' ({checkout}) changed since it was set up: its entry scripts, "
            f"library/ or networks/ differ from the fingerprint recorded then, so it is not run. If you updated it "
            f"yourself, record it again: `{again}` (or re-run `python -m mvic setup-trainer --sd-scripts {checkout} "
            f"--name {name}`)"
        )


def with_trainer(
    settings: LocalSettings, name: str, checkout: str | Path, python: str, make_default: bool = False
) -> LocalSettings:
    """The settings with checkout `name` added (or replaced), its code fingerprinted now. The first
    trainer, or one added with make_default, becomes the default."""
    name = check_name(name, "trainer")
    folder = Path(checkout).expanduser().resolve()
    if not (folder / ENTRY_SCRIPTS[0]).is_file():
        raise SettingsError(f"{folder} is not an sd-scripts checkout (no {ENTRY_SCRIPTS[0]})")
    interpreter = Path(python).expanduser()
    if not interpreter.is_absolute() or not interpreter.exists():
        raise SettingsError(f"--python {python!r}: give the absolute path of the interpreter sd-scripts runs in")
    entry = TrainerCheckout(name, folder, str(interpreter), fingerprint(folder))
    default = settings.default_trainer
    if make_default or default not in settings.trainers:
        default = name
    return dataclasses.replace(settings, trainers={**settings.trainers, name: entry}, default_trainer=default)


def without_trainer(settings: LocalSettings, name: str) -> LocalSettings:
    if name not in settings.trainers:
        raise SettingsError(f"no configured trainer named {name!r} in {settings.path}")
    trainers = {k: v for k, v in settings.trainers.items() if k != name}
    default = settings.default_trainer if settings.default_trainer != name else next(iter(trainers), "")
    return dataclasses.replace(settings, trainers=trainers, default_trainer=default)
