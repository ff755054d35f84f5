"""Where the user's sd-scripts checkout and its Python are, for integration tests.

SD_SCRIPTS_DIR: an sd-scripts checkout. SD_SCRIPTS_PYTHON: an interpreter in which
its pinned dependencies import (default: <checkout>/venv/bin/python, then
<checkout>/../venv-sd/bin/python). Tests skip with a reason when unset.
"""

from __future__ import annotations

import os
from pathlib import Path


def sd_scripts_paths() -> tuple[Path, str] | None:
    directory = os.environ.get("SD_SCRIPTS_DIR", "").strip()
    if not directory:
        return None
    checkout = Path(directory)
    python = os.environ.get("SD_SCRIPTS_PYTHON", "").strip()
    if not python:
        for candidate in (checkout / "venv" / "bin" / "python", checkout.parent / "venv-sd" / "bin" / "python"):
            if candidate.exists():
                python = str(candidate)
                break
    return (checkout, python) if python else None


SKIP_REASON = (
    "real sd-scripts test: set SD_SCRIPTS_DIR (and SD_SCRIPTS_PYTHON) to an sd-scripts checkout and its Python"
)
