"""Find the user's sd-scripts checkout and a Python in which it runs; say exactly what is wrong.

sd-scripts is never imported here: every question is asked of its own interpreter
through `trainers/probe_env.py`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[2]
# A checkout (ComfyUI's custom_nodes, `pip install -e .`) has trainers/ beside mvic/; `pip install .`
# ships it inside the package as mvic/trainers and keeps the config in the user's config folder.
INSTALLED = not (PACK_ROOT / "trainers" / "launch_sd_scripts.py").is_file()
TRAINERS_DIR = Path(__file__).resolve().parents[1] / "trainers" if INSTALLED else PACK_ROOT / "trainers"
TOKENIZERS_DIR = TRAINERS_DIR / "tokenizers"
CONFIG_ENV = "MVIC_CONFIG"
# Pins in sd-scripts' requirements.txt that break FLUX LoRA training when not met. (Newer
# accelerate and safetensors ran fine on the GPU machine, so those are not enforced.)
PINNED = ("transformers", "diffusers", "huggingface-hub")


class TrainerEnvironmentError(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainerEnvironment:
    checkout: Path
    python: str


@dataclass
class EnvironmentReport:
    environment: TrainerEnvironment
    packages: dict[str, str | None] = field(default_factory=dict)
    gpus: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self) -> str:
        env = self.environment
        lines = [f"sd-scripts: {env.checkout}", f"python:     {env.python}"]
        lines += [f"  {name} {version or 'MISSING'}" for name, version in self.packages.items()]
        lines += [f"  GPU {g['index']}: {g['name']} ({g['total_gib']} GiB)" for g in self.gpus] or ["  no CUDA GPU visible"]
        lines += [f"PROBLEM: {p}" for p in self.problems] or ["ready to train"]
        return "\n".join(lines)


def config_path() -> Path:
    default = Path.home() / ".config" / "mvic" / "mvic_config.json" if INSTALLED else PACK_ROOT / "mvic_config.json"
    return Path(os.environ.get(CONFIG_ENV) or default)


def read_config() -> dict:
    path = config_path()
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError as exc:
        raise TrainerEnvironmentError(f"{path}: not valid JSON ({exc}); fix or delete it") from None


def _venv_python(folder: Path) -> Path | None:
    for candidate in (folder / "bin" / "python", folder / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    return None


def find_environment(checkout: str = "", python: str = "") -> TrainerEnvironment:
    """Checkout: the argument, then SD_SCRIPTS_DIR, then the pack's config file.
    Python: the argument, SD_SCRIPTS_PYTHON, the config file, then a venv inside the checkout."""
    config = read_config()
    checkout = checkout.strip() or os.environ.get("SD_SCRIPTS_DIR", "").strip() or config.get("sd_scripts_dir", "")
    if not checkout:
        raise TrainerEnvironmentError(
            "no sd-scripts checkout configured: set the node's sd_scripts_dir, the SD_SCRIPTS_DIR environment variable, "
            f"or run `python -m mvic setup-trainer --sd-scripts DIR` (writes {config_path()})"
        )
    folder = Path(checkout).expanduser()
    if not (folder / "flux_train_network.py").is_file():
        raise TrainerEnvironmentError(f"{folder} is not an sd-scripts checkout (no flux_train_network.py); point sd_scripts_dir at kohya-ss/sd-scripts")
    python = python.strip() or os.environ.get("SD_SCRIPTS_PYTHON", "").strip() or config.get("sd_scripts_python", "")
    if not python:
        found = _venv_python(folder / "venv") or _venv_python(folder / ".venv")
        if not found:
            raise TrainerEnvironmentError(
                f"no Python environment for {folder}: run `python -m mvic setup-trainer --sd-scripts {folder}` "
                "or set SD_SCRIPTS_PYTHON to an interpreter with sd-scripts' requirements"
            )
        python = str(found)
    if not Path(python).exists():
        raise TrainerEnvironmentError(f"sd-scripts Python {python} does not exist")
    return TrainerEnvironment(checkout=folder.resolve(), python=python)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: offline, unbuffered, nothing of ComfyUI's Python leaking in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    overlay = os.environ.get("SD_SCRIPTS_PYTHONPATH", "")  # a --target overlay of pinned packages, if used
    if overlay:
        env["PYTHONPATH"] = overlay
    # COLUMNS: rich wraps log lines at 80 columns when not on a terminal.
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8", "NCCL_NVLS_ENABLE": "0", "COLUMNS": "200"})
    env.update(extra or {})
    return env


def required_pins(checkout: Path) -> dict[str, str]:
    pins = {}
    requirements = checkout / "requirements.txt"
    if requirements.is_file():
        for line in requirements.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)", line)
            if match and match.group(1).lower() in PINNED:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def check_environment(environment: TrainerEnvironment, timeout: float = 180, load_parser: bool = True) -> EnvironmentReport:
    """`load_parser=False` skips importing sd-scripts' trainer module (seconds on a GPU machine):
    the pre-launch check needs versions and GPUs; `check-trainer` asks for everything."""
    report = EnvironmentReport(environment)
    try:
        out = subprocess.run(
            [environment.python, str(TRAINERS_DIR / "probe_env.py"), str(environment.checkout), *([] if load_parser else ["--no-parser"])],
            capture_output=True, text=True, timeout=timeout, env=child_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.problems.append(f"could not run {environment.python}: {exc}")
        return report
    line = next((l for l in out.stdout.splitlines() if l.startswith("MVIC_PROBE ")), None)
    if line is None:
        report.problems.append(f"{environment.python} failed to run the probe: {(out.stderr or out.stdout).strip()[-800:]}")
        return report
    probe = json.loads(line[len("MVIC_PROBE "):])
    report.packages, report.gpus = probe["packages"], probe["gpus"]
    for name in ("torch", "transformers", "diffusers", "accelerate", "safetensors"):
        if not probe["packages"].get(name):
            why = probe.get("errors", {}).get(name, "not installed")
            report.problems.append(f"{name} does not import in {environment.python}: {why}")
    pins = required_pins(environment.checkout)
    for name, wanted in pins.items():
        have = probe["packages"].get(name.replace("-", "_")) or probe["packages"].get(name)
        if have and have.split("+")[0] != wanted:
            report.problems.append(f"{name} {have} installed, sd-scripts pins {wanted}: `pip install {name}=={wanted}` in that environment")
    transformers = probe["packages"].get("transformers") or ""
    if transformers.startswith("5."):
        report.problems.append(f"transformers {transformers}: sd-scripts breaks under transformers 5 (CLIP-L loads empty); install transformers==4.54.1 there")
    for rel, present in probe["files"].items():
        if not present:
            report.problems.append(f"{rel} is missing from {environment.checkout}: update the checkout (git pull)")
    if probe["parser"] not in (None, "ok"):
        report.problems.append(f"flux_train_network.py's parser does not load: {probe['parser']}")
    return report


def setup_commands(checkout: Path, torch_spec: str = "torch torchvision") -> list[list[str]]:
    """What `setup-trainer` runs: a venv inside the checkout with its own requirements."""
    venv = checkout / "venv"
    python = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    return [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        [python, "-m", "pip", "install", *torch_spec.split()],
        [python, "-m", "pip", "install", "-r", "requirements.txt"],
    ]


def write_config(checkout: Path, python: str) -> Path:
    path = config_path()
    config = read_config()
    config.update({"sd_scripts_dir": str(checkout), "sd_scripts_python": python})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path
