"""`python -m mvic sample`: the sampler without ComfyUI, through diffusers."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(commands) -> None:
    sample = commands.add_parser(
        "sample", help="sample a multi-view composite with diffusers (FluxPipeline + the LoRA through peft)"
    )
    for name in ("flux", "clip-l", "t5xxl", "ae"):
        sample.add_argument(f"--{name}", required=True, help="single-file BFL release")
    sample.add_argument("--prompt", required=True, help="a full marker caption, or a summary with --panel-prompts")
    sample.add_argument("--panel-prompts", default="", help="one line per panel (use \\n between lines)")
    sample.add_argument("--lora", default="")
    sample.add_argument("--lora-strength", type=float, default=1.0)
    sample.add_argument("--grid", default="", help="ROWSxCOLS; default: as the LoRA was trained, else 2x2")
    sample.add_argument("--panel", default="", help="WIDTHxHEIGHT; default: as the LoRA was trained, else 512x512")
    sample.add_argument("--reference", action="append", default=[], help="reference image(s) for image -> other views")
    sample.add_argument("--reference-panels", default="1")
    sample.add_argument("--steps", type=int, default=20)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--guidance", type=float, default=3.5)
    sample.add_argument(
        "--t5-tokens", type=_t5_tokens, default=512, help="T5 prompt length, 1-512 (FLUX.1-dev's 512; fewer is faster)"
    )
    sample.add_argument("--out", default="mvic_samples")


def _t5_tokens(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 512:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of tokens from 1 to 512 (FLUX.1-dev: 512)")
    return int(text)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from ..flux_files import FluxModelFiles
    from ..images import load_rgb
    from .diffusers_engine import sample

    rows, _, cols = args.grid.lower().partition("x") if args.grid else ("0", "", "0")
    width, _, height = args.panel.lower().partition("x") if args.panel else ("0", "", "0")
    references = [np.asarray(load_rgb(path)) for path in args.reference] or None
    result = sample(
        FluxModelFiles(Path(args.flux), Path(args.clip_l), Path(args.t5xxl), Path(args.ae)),
        args.prompt,
        args.panel_prompts.replace("\\n", "\n"),
        Path(args.lora) if args.lora else None,
        args.lora_strength,
        int(rows),
        int(cols),
        int(width),
        int(height or width),
        args.seed,
        args.steps,
        args.guidance,
        references,
        args.reference_panels,
        args.t5_tokens,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(result.composite).save(out / "composite.png")
    for index, view in enumerate(result.views, start=1):
        Image.fromarray(view).save(out / f"view_{index}.png")
    (out / "prompt.txt").write_text(result.prompt + "\n", encoding="utf-8")
    applied = f"; the LoRA is applied to {result.lora_modules} module(s)" if args.lora else ""
    print(f"{out / 'composite.png'} and {len(result.views)} views{applied}; prompt: {result.prompt}")
    return 0
