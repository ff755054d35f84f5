"""Find the user's sd-scripts checkout and a Python in which it runs; say exactly what is wrong.

Which checkout runs is this machine's decision, never a workflow's: a checkout configured in
the local settings (`python -m mvic setup-trainer` / `config add-trainer`, with a fingerprint
of its code checked before each launch), or SD_SCRIPTS_DIR / SD_SCRIPTS_PYTHON in ComfyUI's
environment (set by whoever starts it; fingerprinted only when that folder is also configured).
sd-scripts is never imported here: every question is asked of its own interpreter
through `trainers/probe_env.py`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..files import PACK_ROOT, TRAINERS_DIR
from ..settings import LocalSettings, load_settings
from . import probe_cache
from .checkout import CheckoutChanged, verify

LEGACY_CONFIG_ENV = "MVIC_CONFIG"
DEFAULT_TRAINER = "(default)"
# Pins in sd-scripts' requirements.txt that break FLUX LoRA training when not met. (Newer
# accelerate and safetensors ran fine on the GPU machine, so those are not enforced.)
PINNED = ("transformers", "diffusers", "huggingface-hub")
DEFAULT_TORCH = "torch torchvision"  # PyPI's Linux wheels are CUDA builds (GBs of CUDA libraries)
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
TRAINER_FILES = ("flux_train_network.py", "networks/lora_flux.py", "library/flux_utils.py")  # probe_env.py checks them


class TrainerEnvironmentError(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainerEnvironment:
    checkout: Path
    python: str
    name: str = ""  # configured in the local settings; "" = named by SD_SCRIPTS_DIR or a CLI argument
    fingerprint: str = ""  # recorded at setup, checked before launch (configured checkouts)


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
        lines += [f"  GPU {g['index']}: {g['name']} ({g['total_gib']} GiB)" for g in self.gpus] or [
            "  no CUDA GPU visible"
        ]
        lines += [f"PROBLEM: {p}" for p in self.problems] or [self._verdict()]
        return "\n".join(lines)

    def _verdict(self) -> str:
        if self.gpus:
            return "ready to train"
        torch = self.packages.get("torch") or ""
        build = f" (torch {torch} is a CPU-only build)" if "+cpu" in torch else ""
        return (
            f"ready to train, but ON THE CPU: {self.environment.python} sees no CUDA GPU{build}, so training "
            "would run on the CPU: fine for tiny test models, far too slow for a real FLUX LoRA"
        )


def legacy_config_path() -> Path:
    """Where earlier versions kept the trainer's location (no longer read: see local settings)."""
    return Path(os.environ.get(LEGACY_CONFIG_ENV) or PACK_ROOT / "mvic_config.json")


def _legacy_hint() -> str:
    path = legacy_config_path()
    try:
        old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        old = {}
    if not isinstance(old, dict) or not old.get("sd_scripts_dir"):
        return ""
    python = old.get("sd_scripts_python") or "PYTHON"
    return (
        f". The pack's old {path} names {old['sd_scripts_dir']}, but a file in the pack folder no longer decides "
        f"which program runs; register that checkout in the local settings once: "
        f"`python -m mvic config add-trainer sd-scripts --sd-scripts {old['sd_scripts_dir']} --python {python}`"
    )


def _venv_python(folder: Path) -> Path | None:
    for candidate in (folder / "bin" / "python", folder / "Scripts" / "python.exe"):
        if candidate.exists():
            return candidate
    return None


def trainer_choices(settings: LocalSettings) -> list[str]:
    """What the node's sd_scripts_dir dropdown offers: the default, then every configured checkout."""
    return [DEFAULT_TRAINER, *sorted(settings.trainers)]


def check_trainer_choice(choice: str, settings: LocalSettings, what: str = "LoRATrainer.sd_scripts_dir") -> None:
    """A workflow's trainer choice must be a name configured on this machine (no files are touched)."""
    if choice.strip() in ("", DEFAULT_TRAINER) or choice in settings.trainers:
        return
    known = ", ".join(trainer_choices(settings))
    raise TrainerEnvironmentError(
        f"{what} {choice!r} is not an sd-scripts checkout configured on this machine (choose one of: {known}). "
        f"A workflow cannot choose which program runs; register a checkout locally with "
        f"`python -m mvic config add-trainer NAME --sd-scripts DIR --python PYTHON` (or `python -m mvic setup-trainer "
        f"--sd-scripts DIR`) and pick NAME ({settings.path})"
    )


def resolve_trainer(choice: str, settings: LocalSettings) -> TrainerEnvironment:
    """The checkout a node may run. '(default)': SD_SCRIPTS_DIR when set (the environment is local),
    else the settings' default_trainer (or the only configured one). A configured checkout is
    checked against its recorded fingerprint; SD_SCRIPTS_DIR is too when it is a configured one."""
    check_trainer_choice(choice, settings)
    name = "" if choice.strip() in ("", DEFAULT_TRAINER) else choice
    if not name:
        from_env = _from_environment(settings)
        if from_env is not None:
            return from_env
        name = settings.default_trainer or (next(iter(settings.trainers)) if len(settings.trainers) == 1 else "")
        if not name:
            raise TrainerEnvironmentError(
                "no sd-scripts checkout is configured on this machine: run `python -m mvic setup-trainer "
                "--sd-scripts DIR` (or `python -m mvic config add-trainer NAME --sd-scripts DIR --python PYTHON`), "
                f"or set SD_SCRIPTS_DIR and SD_SCRIPTS_PYTHON for ComfyUI ({settings.path})" + _legacy_hint()
            )
    entry = settings.trainer(name)
    if entry is None:
        raise TrainerEnvironmentError(
            f"default_trainer {name!r} is not among the trainers in {settings.path}: run "
            f"`python -m mvic config set default_trainer NAME` with one of "
            f"{', '.join(settings.trainers)}"
        )
    environment = TrainerEnvironment(entry.sd_scripts_dir, entry.python, name, entry.fingerprint)
    _check_paths(environment)
    verify_checkout(environment)
    return environment


def _from_environment(settings: LocalSettings) -> TrainerEnvironment | None:
    checkout = os.environ.get("SD_SCRIPTS_DIR", "").strip()
    if not checkout:
        return None
    environment = find_environment(checkout, os.environ.get("SD_SCRIPTS_PYTHON", "").strip())
    for name, entry in settings.trainers.items():
        if Path(entry.sd_scripts_dir).expanduser().resolve() == environment.checkout:
            environment = replace(environment, name=name, fingerprint=entry.fingerprint)
            verify_checkout(environment)
    return environment


def verify_checkout(environment: TrainerEnvironment) -> None:
    """Refuse a configured checkout whose code changed since setup (no-op for unrecorded ones)."""
    if not environment.name:
        return
    try:
        verify(environment.checkout, environment.fingerprint, environment.name, environment.python)
    except CheckoutChanged as exc:
        raise TrainerEnvironmentError(str(exc)) from None


def find_environment(checkout: str, python: str = "") -> TrainerEnvironment:
    """A checkout named locally (CLI argument or SD_SCRIPTS_DIR), not fingerprinted: the person
    at this machine typed it. Python: the argument, SD_SCRIPTS_PYTHON, then a venv inside it."""
    folder = Path(checkout).expanduser()
    python = python.strip() or os.environ.get("SD_SCRIPTS_PYTHON", "").strip()
    if not python and (folder / "flux_train_network.py").is_file():
        found = _venv_python(folder / "venv") or _venv_python(folder / ".venv")
        if not found:
            raise TrainerEnvironmentError(
                f"no Python environment for {folder}: run `python -m mvic setup-trainer --sd-scripts {folder}` "
                "or set SD_SCRIPTS_PYTHON to an interpreter with sd-scripts' requirements"
            )
        python = str(found)
    environment = TrainerEnvironment(checkout=folder.resolve(), python=python)
    _check_paths(environment)
    return environment


def _check_paths(environment: TrainerEnvironment) -> None:
    folder = environment.checkout
    if not (folder / "flux_train_network.py").is_file():
        raise TrainerEnvironmentError(
            f"{folder} is not an sd-scripts checkout (no flux_train_network.py); give a kohya-ss/sd-scripts checkout"
        )
    if not environment.python or not Path(environment.python).exists():
        raise TrainerEnvironmentError(f"sd-scripts Python {environment.python or '(none)'} does not exist")


# Environment variables a training child never needs and must not see (API keys of the captioners,
# cloud and hub tokens): any name with one of these words, plus the key variables of local endpoints.
SECRET_WORDS = frozenset(
    {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS", "AUTH"}
)


def _secret_names(settings: LocalSettings | None) -> set[str]:
    names = {name for name in os.environ if SECRET_WORDS & set(name.upper().split("_"))}
    if settings is not None:
        names |= {var for endpoint in settings.all_endpoints().values() for var in endpoint.key_env}
    return names


def child_env(extra: dict[str, str] | None = None, settings: LocalSettings | None = None) -> dict[str, str]:
    """The child's environment: offline, unbuffered, nothing of ComfyUI's Python leaking in, no secrets."""
    if settings is None:
        try:
            settings = load_settings()
        except ValueError:
            settings = None
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"} | _secret_names(settings)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    overlay = os.environ.get("SD_SCRIPTS_PYTHONPATH", "")  # a --target overlay of pinned packages, if used
    if overlay:
        env["PYTHONPATH"] = overlay
    # COLUMNS: rich wraps log lines at 80 columns when not on a terminal.
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONIOENCODING": "utf-8",
            "NCCL_NVLS_ENABLE": "0",
            "COLUMNS": "200",
        }
    )
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


def check_environment(
    environment: TrainerEnvironment, timeout: float = 180, load_parser: bool = True, reuse: bool = False
) -> EnvironmentReport:
    """`load_parser=False` skips importing sd-scripts' trainer module (seconds on a GPU machine):
    the pre-launch check needs versions and GPUs; `check-trainer` asks for everything. `reuse`: take
    the answer remembered for this environment while nothing it depends on changed (probe_cache.py)."""
    report = EnvironmentReport(environment)
    mode = "parser" if load_parser else "no-parser"
    key = probe_cache.probe_key(environment.python, environment.checkout, TRAINER_FILES, mode) if reuse else None
    probe = probe_cache.load(key)
    fresh = probe is None
    if fresh:
        probe = _run_probe(environment, load_parser, timeout, report)
        if probe is None:
            return report
    _read_probe(report, probe)
    if fresh and report.ok:
        probe_cache.store(key, probe)
    return report


def _run_probe(
    environment: TrainerEnvironment, load_parser: bool, timeout: float, report: EnvironmentReport
) -> dict | None:
    try:
        out = subprocess.run(
            [
                environment.python,
                str(TRAINERS_DIR / "probe_env.py"),
                str(environment.checkout),
                *([] if load_parser else ["--no-parser"]),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.problems.append(f"could not run {environment.python}: {exc}")
        return None
    line = next((l for l in out.stdout.splitlines() if l.startswith("MVIC_PROBE ")), None)
    if line is None:
        report.problems.append(
            f"{environment.python} failed to run the probe: {(out.stderr or out.stdout).strip()[-800:]}"
        )
        return None
    return json.loads(line[len("MVIC_PROBE ") :])


def _read_probe(report: EnvironmentReport, probe: dict) -> None:
    environment = report.environment
    report.packages, report.gpus = probe["packages"], probe["gpus"]
    for name in ("torch", "transformers", "diffusers", "accelerate", "safetensors"):
        if not probe["packages"].get(name):
            why = probe.get("errors", {}).get(name, "not installed")
            report.problems.append(f"{name} does not import in {environment.python}: {why}")
    pins = required_pins(environment.checkout)
    for name, wanted in pins.items():
        have = probe["packages"].get(name.replace("-", "_")) or probe["packages"].get(name)
        if have and have.split("+")[0] != wanted:
            report.problems.append(
                f"{name} {have} installed, sd-scripts pins {wanted}: `pip install {name}=={wanted}` in that environment"
            )
    transformers = probe["packages"].get("transformers") or ""
    if transformers.startswith("5."):
        report.problems.append(
            f"transformers {transformers}: sd-scripts breaks under transformers 5 (CLIP-L loads empty); install "
            "transformers==4.54.1 there"
        )
    for rel, present in probe["files"].items():
        if not present:
            report.problems.append(f"{rel} is missing from {environment.checkout}: update the checkout (git pull)")
    if probe["parser"] not in (None, "ok"):
        report.problems.append(f"flux_train_network.py's parser does not load: {probe['parser']}")


def nvidia_gpu_visible() -> bool:
    """An NVIDIA driver on this machine: `nvidia-smi` on PATH or the Linux driver's /proc entry."""
    return shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia").exists()


def torch_choice(torch_spec: str, gpu_visible: bool) -> tuple[str, str]:
    """The torch requirement(s) setup-trainer installs, and the sentence that says why. An explicit
    --torch always wins; else CUDA torch (PyPI) with an NVIDIA GPU, CPU torch (PyTorch's CPU index) without."""
    if torch_spec.strip():
        return torch_spec, f"torch: {torch_spec} (as given with --torch)"
    if gpu_visible:
        return DEFAULT_TORCH, (
            f"NVIDIA GPU visible: installing CUDA torch ({DEFAULT_TORCH} from PyPI); --torch chooses another"
        )
    return (
        f"{DEFAULT_TORCH} --index-url {CPU_TORCH_INDEX}",
        "no NVIDIA GPU visible (no nvidia-smi, no /proc/driver/nvidia): installing CPU torch from "
        f"{CPU_TORCH_INDEX} (no CUDA download; training would run on the CPU). For a GPU build, give --torch, e.g. "
        "--torch 'torch torchvision --index-url https://download.pytorch.org/whl/cu128'",
    )


def setup_commands(checkout: Path, torch_spec: str = DEFAULT_TORCH) -> list[list[str]]:
    """What `setup-trainer` runs: a venv inside the checkout with its own requirements."""
    venv = checkout / "venv"
    python = str(venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))
    return [
        [sys.executable, "-m", "venv", str(venv)],
        [python, "-m", "pip", "install", "--upgrade", "pip"],
        [python, "-m", "pip", "install", *torch_spec.split()],
        [python, "-m", "pip", "install", "-r", "requirements.txt"],
    ]
