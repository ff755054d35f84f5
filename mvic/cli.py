"""`python -m mvic build|demo`: the dataset job without ComfyUI."""
from __future__ import annotations

import argparse
import sys

from .captions.captioner import CaptionRunError, CaptionSettings
from .consistency import cli as consistency_cli
from .layout import FIT_MODES, parse_color
from .loading import SELECTION_METHODS
from .markers import MarkerStyle
from .sampling import cli as sampling_cli
from .training import cli as training_cli
from .sources import SOURCE_KINDS


def _panel_size(text: str) -> tuple[int, int]:
    try:
        width, _, height = text.lower().partition("x")
        return int(width), int(height or width)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--panel {text!r}: write WIDTHxHEIGHT, e.g. 512x512") from None


def _add_build_args(parser: argparse.ArgumentParser, demo: bool) -> None:
    if not demo:
        parser.add_argument("--source", choices=SOURCE_KINDS, default="auto")
        parser.add_argument("--input", required=True, help="folder of sets, MVImgNet root, or video")
    parser.add_argument("--out", default="iclora_demo" if demo else "iclora_dataset", help="dataset folder to write")
    parser.add_argument("--grid", default="2x2", help="ROWSxCOLS (default 2x2)")
    parser.add_argument("--panel", type=_panel_size, default=(256, 256) if demo else (512, 512), help="panel WIDTHxHEIGHT, multiples of 16")
    parser.add_argument("--fit", choices=FIT_MODES, default="crop")
    parser.add_argument("--pad-color", default="#000000")
    parser.add_argument("--divider", type=int, default=0, help="divider width in pixels (painted over panel edges)")
    parser.add_argument("--selection", choices=SELECTION_METHODS, default="auto")
    parser.add_argument("--max-sets", type=int, default=0)
    parser.add_argument("--reject-blurred", action="store_true")
    parser.add_argument("--reject-duplicates", action="store_true")
    parser.add_argument("--min-consistency", type=float, default=0.0,
                        help="drop sets whose composite scores below this consistency (0-1; 0 = keep all)")
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    parser.add_argument("--trigger", default="")
    parser.add_argument("--marker-prefix", default="")
    parser.add_argument("--panel-marker", default="")
    parser.add_argument("--overwrite-edited-captions", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    if not demo:  # the demo always captions offline with the template backend
        from .captions.backends.base import BACKENDS

        captions = parser.add_argument_group("captions")
        captions.add_argument("--caption-backend", choices=BACKENDS, default="template")
        captions.add_argument("--caption-model", default="", help="empty = the backend's default model")
        captions.add_argument("--caption-base-url", default="", help="e.g. http://127.0.0.1:11434/v1 for Ollama")
        captions.add_argument("--key-file", default="", help="file holding only the API key; else GEMINI_API_KEY / GOOGLE_API_KEY / OPENAI_API_KEY")
        captions.add_argument("--caption-concurrency", type=int, default=4)
        captions.add_argument("--caption-rpm", type=int, default=10, help="requests per minute (0 = no cap)")
        captions.add_argument("--appearance-only", action="store_true", help="no pose words for panels the model is unsure about")
        captions.add_argument("--caption-input", choices=("composite", "views"), default="composite")
        captions.add_argument("--caption-cache-dir", default="", help="default ~/.cache/mvic/captions")


def _caption_settings(args: argparse.Namespace) -> CaptionSettings:
    if args.command == "demo":
        return CaptionSettings()
    return CaptionSettings(
        backend=args.caption_backend,
        model=args.caption_model,
        base_url=args.caption_base_url,
        key_file=args.key_file,
        concurrency=args.caption_concurrency,
        rpm=args.caption_rpm,
        appearance_only=args.appearance_only,
        input_mode=args.caption_input,
        cache_dir=args.caption_cache_dir,
    )


def main(argv: list[str] | None = None) -> int:
    from .pipeline import BuildSettings, build_dataset

    parser = argparse.ArgumentParser(prog="python -m mvic", description="Multi-view IC-LoRA: dataset builder and trainer")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_build_args(commands.add_parser("build", help="source -> views -> composites -> captions -> dataset"), demo=False)
    _add_build_args(commands.add_parser("demo", help="the same on the embedded sample data (nothing to download, no key)"), demo=True)
    training_cli.add_commands(commands)
    sampling_cli.add_commands(commands)
    consistency_cli.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "score":
        try:
            return consistency_cli.run(args)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.command in ("setup-trainer", "check-trainer", "train", "sample"):
        try:
            return (sampling_cli if args.command == "sample" else training_cli).run(args)
        except (ValueError, OSError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        rows, _, cols = args.grid.lower().partition("x")
        settings = BuildSettings(
            source="sample" if args.command == "demo" else args.source,
            input="" if args.command == "demo" else args.input,
            out=args.out,
            rows=int(rows),
            cols=int(cols),
            panel_width=args.panel[0],
            panel_height=args.panel[1],
            fit=args.fit,
            pad_color=parse_color(args.pad_color),
            divider_width=args.divider,
            selection=args.selection,
            max_sets=args.max_sets,
            reject_blurred=args.reject_blurred,
            reject_duplicates=args.reject_duplicates,
            min_consistency=args.min_consistency,
            image_format=args.format,
            trigger=args.trigger,
            overwrite_edited_captions=args.overwrite_edited_captions,
            workers=args.workers,
            style=MarkerStyle(args.marker_prefix, args.panel_marker),
            captions=_caption_settings(args),
        )
        build_dataset(settings)
    except (ValueError, OSError, CaptionRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
