"""`python -m mvic setup-trainer | check-trainer | train`: the trainer without ComfyUI."""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from .presets import PRESET_CHOICES


def add_commands(commands) -> None:
    setup = commands.add_parser("setup-trainer", help="create a venv for your sd-scripts checkout from its own requirements (needs internet)")
    setup.add_argument("--sd-scripts", required=True, help="your kohya-ss/sd-scripts checkout")
    setup.add_argument("--torch", default="torch torchvision", help="torch requirement(s) for that venv, e.g. 'torch==2.7.1 torchvision'")
    setup.add_argument("--dry-run", action="store_true", help="print the commands only")
    check = commands.add_parser("check-trainer", help="report what the sd-scripts environment is missing")
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
    train.add_argument("--extra-args", default="")
    train.add_argument("--sd-scripts", default="")
    train.add_argument("--gpus", default="", help="e.g. 0,1")
    train.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                       help="torch.compile; auto: only when the steps repay the compile time (80 preset)")


def run(args: argparse.Namespace) -> int:
    from .environment import check_environment, find_environment, setup_commands, write_config

    if args.command == "setup-trainer":
        checkout = Path(args.sd_scripts).expanduser().resolve()
        if not (checkout / "flux_train_network.py").is_file():
            raise ValueError(f"{checkout} is not an sd-scripts checkout (no flux_train_network.py)")
        commands = setup_commands(checkout, args.torch)
        for command in commands:
            print("$ " + " ".join(command))
            if not args.dry_run:
                subprocess.run(command, cwd=checkout, check=True)
        python = commands[1][0]
        if not args.dry_run:
            print(f"wrote {write_config(checkout, python)}")
            print(check_environment(find_environment(str(checkout), python)).text())
        return 0
    if args.command == "check-trainer":
        report = check_environment(find_environment(args.sd_scripts, args.python))
        print(report.text())
        return 0 if report.ok else 1
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    from ..sources.common import safe_name
    from .arguments import FluxModelFiles, TrainingSettings
    from .environment import find_environment
    from .trainer import TrainingCallbacks, train_lora

    name = safe_name(args.name, "iclora")
    settings = TrainingSettings(
        dataset_dir=Path(args.dataset).resolve(),
        models=FluxModelFiles(Path(args.flux), Path(args.clip_l), Path(args.t5xxl), Path(args.ae)),
        run_dir=Path(args.run_dir or f"mvic_runs/{name}").resolve(), output_name=name, steps=args.steps, rank=args.rank,
        alpha=float(args.rank), learning_rate=args.lr, save_every_n_steps=args.save_every, sample_every_n_steps=args.sample_every,
        extra_args=args.extra_args, gpu_ids=tuple(int(i) for i in args.gpus.split(",") if i.strip()), compile=args.compile,
    )

    from .previews import preview_line, watcher_for

    watcher = watcher_for(settings, on_preview=lambda _image, record: print(preview_line(record), flush=True))

    def show(progress):
        loss = f" loss {progress.loss:.4f}" if progress.loss is not None else ""
        print(f"step {progress.step}/{progress.total}{loss}", flush=True)
        watcher.poll()  # sd-scripts' new previews: scored, one line each

    result = train_lora(settings, find_environment(args.sd_scripts), Path(args.loras_dir), name, args.preset, TrainingCallbacks(on_progress=show))
    print(f"LoRA: {result.lora_path}")
    print(watcher.finish(name).text)
    return 0
