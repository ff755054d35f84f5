"""`python -m mvic setup-trainer | check-trainer | train`: the trainer without ComfyUI.

The command line is typed by the person at this machine, so it may name checkouts and paths
directly (`--sd-scripts`, `--python`) and, with `--unsafe-extra-args`, pass any sd-scripts
option; a workflow's LoRATrainer node can do neither."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .preflight import CAPTION_CHOICES
from .presets import PRESET_CHOICES


# A declarative table, kept compact: one argument a line would take it past 60 lines.
# fmt: off
def add_commands(commands) -> None:
    setup = commands.add_parser("setup-trainer", help="register your sd-scripts checkout in the local settings "
                                "(and create a venv for it from its own requirements: needs internet)")
    setup.add_argument("--sd-scripts", required=True, help="your kohya-ss/sd-scripts checkout")
    setup.add_argument("--name", default="sd-scripts", help="the name LoRATrainer's sd_scripts_dir lists")
    setup.add_argument("--python", default="", help="use this existing interpreter instead of creating <checkout>/venv")
    setup.add_argument("--torch", default="", help=(
        "torch requirement(s) for that venv, as pip arguments, e.g. 'torch==2.7.1 torchvision' or 'torch torchvision "
        "--index-url https://download.pytorch.org/whl/cu128'; default: CUDA torch from PyPI where an NVIDIA GPU is "
        "visible, else CPU torch from https://download.pytorch.org/whl/cpu"))
    setup.add_argument("--settings", default="",
                       help="settings file (default: $MVIC_SETTINGS or ~/.config/mvic/settings.json)")
    setup.add_argument("--dry-run", action="store_true", help="print the commands only")
    check = commands.add_parser("check-trainer", help="report what the sd-scripts environment is missing")
    check.add_argument("--trainer", default="", help="a configured checkout's name (default: the default one)")
    check.add_argument("--sd-scripts", default="")
    check.add_argument("--python", default="")
    train = commands.add_parser("train", help="train an IC-LoRA on an exported dataset")
    train.add_argument("--dataset", required=True, help="a folder written by SaveICLoRADataset / build / demo")
    for name in ("flux", "clip-l", "t5xxl", "ae"):
        train.add_argument(f"--{name}", required=True)
    train.add_argument("--name", default="multiview_iclora")
    train.add_argument("--run-dir", default="", help="default: ./mvic_runs/<name>")
    train.add_argument("--loras-dir", default="loras")
    train.add_argument("--steps", type=int, default=1000)
    train.add_argument("--rank", type=int, default=16)
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--preset", choices=PRESET_CHOICES, default="auto")
    train.add_argument("--save-every", type=int, default=250)
    train.add_argument("--sample-every", type=int, default=0)
    train.add_argument("--sample-steps", type=int, default=20, help="denoising steps of each preview")
    train.add_argument("--extra-args", default="", help="training options (allow-list: mvic/training/extra_args.py)")
    train.add_argument("--unsafe-extra-args", action="store_true",
                       help="pass --extra-args to sd-scripts unchecked (any option, paths too): your own use only")
    train.add_argument("--caption-problems", choices=CAPTION_CHOICES, default="refuse")
    train.add_argument("--trainer", default="", help="a configured checkout's name (default: the default one)")
    train.add_argument("--sd-scripts", default="", help="a checkout to run as it is (not fingerprinted)")
    train.add_argument("--gpus", default="", help="e.g. 0,1")
    train.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                       help="torch.compile; auto: only when the steps repay the compile time (80 preset)")
    train.add_argument("--fp8-matmul", choices=("auto", "on", "off"), default="auto",
                       help="FP8 products for the frozen FLUX weights (compute capability 8.9+); "
                            "auto: where measured faster")
# fmt: on


def run(args: argparse.Namespace) -> int:
    if args.command == "setup-trainer":
        return _setup(args)
    if args.command == "check-trainer":
        from .environment import check_environment

        report = check_environment(_environment(args))
        print(report.text())
        return 0 if report.ok else 1
    return _train(args)


def _environment(args: argparse.Namespace):
    """--sd-scripts (with --python): that checkout as it is; else a configured one (fingerprint checked)."""
    from ..settings import load_settings
    from .environment import DEFAULT_TRAINER, find_environment, resolve_trainer

    if args.sd_scripts:
        return find_environment(args.sd_scripts, getattr(args, "python", ""))
    return resolve_trainer(args.trainer or DEFAULT_TRAINER, load_settings())


def _setup(args: argparse.Namespace) -> int:
    from ..settings import load_settings, save_settings
    from .checkout import with_trainer
    from .environment import check_environment, nvidia_gpu_visible, resolve_trainer, setup_commands, torch_choice

    checkout = Path(args.sd_scripts).expanduser().resolve()
    if not (checkout / "flux_train_network.py").is_file():
        raise ValueError(f"{checkout} is not an sd-scripts checkout (no flux_train_network.py)")
    python = args.python
    if not python:
        torch_spec, why = torch_choice(args.torch, nvidia_gpu_visible())
        if not args.torch.strip():
            print(why)
        commands = setup_commands(checkout, torch_spec)
        for command in commands:
            print("$ " + " ".join(command))
            if not args.dry_run:
                subprocess.run(command, cwd=checkout, check=True)
        python = commands[1][0]
    settings = load_settings(path=args.settings or None)
    if args.dry_run:
        print(f"would record {args.name} = {checkout} with {python} in {settings.path}")
        return 0
    settings = with_trainer(settings, args.name, checkout, python)
    print(f"wrote {save_settings(settings)}: trainer {args.name} = {checkout} with {python} (fingerprint recorded)")
    print(check_environment(resolve_trainer(args.name, settings)).text())
    return 0


def command_line() -> dict:
    """What started a CLI run, for its run folder: the command as typed and where (no environment)."""
    return {"started_by": "command line", "command": list(sys.orig_argv), "cwd": os.getcwd()}


def _train(args: argparse.Namespace) -> int:
    from ..files import safe_name
    from ..flux_files import FluxModelFiles
    from .arguments import TrainingSettings
    from .multi_gpu import parse_gpu_ids
    from .trainer import TrainingCallbacks, train_lora

    name = safe_name(args.name, "iclora")
    settings = TrainingSettings(
        dataset_dir=Path(args.dataset).resolve(),
        models=FluxModelFiles(Path(args.flux), Path(args.clip_l), Path(args.t5xxl), Path(args.ae)),
        run_dir=Path(args.run_dir or f"mvic_runs/{name}").resolve(),
        output_name=name,
        steps=args.steps,
        rank=args.rank,
        alpha=float(args.rank),
        learning_rate=args.lr,
        save_every_n_steps=args.save_every,
        sample_every_n_steps=args.sample_every,
        sample_steps=args.sample_steps,
        extra_args=args.extra_args,
        gpu_ids=parse_gpu_ids(args.gpus),
        compile=args.compile,
        fp8_matmul=args.fp8_matmul,
    )

    from .previews import preview_line, watcher_for

    watcher = watcher_for(settings, on_preview=lambda _image, record: print(preview_line(record), flush=True))

    def show(progress):
        loss = f" loss {progress.loss:.6g}" if progress.loss is not None else ""  # the step's own loss
        print(f"step {progress.step}/{progress.total}{loss}", flush=True)
        watcher.poll()  # sd-scripts' new previews: scored, one line each

    def show_phase(phase):
        print(f"[mvic] {phase.text()}", flush=True)

    callbacks = TrainingCallbacks(on_progress=show, on_phase=show_phase, log=print)
    result = train_lora(
        settings,
        _environment(args),
        Path(args.loras_dir),
        name,
        args.preset,
        callbacks,
        caption_problems=args.caption_problems,
        unsafe_extra_args=args.unsafe_extra_args,
        started_by=command_line(),
    )
    print(f"LoRA: {result.lora_path}")
    print(watcher.finish(name).text)
    return 0
