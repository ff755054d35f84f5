"""`python -m mvic build|demo`: the dataset job without ComfyUI."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from . import config_cli
from .captions.backends.request import DEFAULT_DEADLINE_S, DEFAULT_MAX_RESPONSE_BYTES
from .captions.captioner import CaptionRunError, CaptionSettings
from .consistency import cli as consistency_cli
from .export.transaction import DatasetBusy
from .settings import Endpoint, load_settings
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


def _grid(text: str) -> tuple[int, int]:
    """'3x1' -> (3, 1); '' -> (0, 0): the source's default."""
    if not text.strip():
        return 0, 0
    rows, _, cols = text.lower().partition("x")
    try:
        return int(rows), int(cols)
    except ValueError:
        raise ValueError(f"--grid {text!r}: write ROWSxCOLS, e.g. 2x2, or 3x1 for three panels stacked") from None


def _add_build_args(parser: argparse.ArgumentParser, demo: bool) -> None:
    if not demo:
        parser.add_argument("--source", choices=SOURCE_KINDS, default="auto")
        parser.add_argument(
            "--input", required=True, help="folder of sets, MVImgNet root, video, or composites + .txt captions"
        )
    parser.add_argument("--out", default="iclora_demo" if demo else "iclora_dataset", help="dataset folder to write")
    parser.add_argument(
        "--grid",
        default="2x2" if demo else "",
        help="ROWSxCOLS, e.g. 3x1 for three panels stacked (default 2x2; composites: from their captions)",
    )
    parser.add_argument(
        "--panel",
        type=_panel_size,
        default=(256, 256) if demo else (0, 0),
        help="panel WIDTHxHEIGHT, multiples of 16 (default 512x512; composites: their own size, least refit)",
    )
    parser.add_argument("--fit", choices=FIT_MODES, default="crop")
    parser.add_argument("--pad-color", default="#000000")
    parser.add_argument("--divider", type=int, default=0, help="divider width in pixels (painted over panel edges)")
    parser.add_argument("--selection", choices=SELECTION_METHODS, default="auto")
    parser.add_argument("--max-sets", type=int, default=0)
    parser.add_argument("--reject-blurred", action="store_true")
    parser.add_argument("--reject-duplicates", action="store_true")
    parser.add_argument(
        "--min-consistency",
        type=float,
        default=0.0,
        help="drop sets whose composite scores below this consistency (0-1; 0 = keep all)",
    )
    parser.add_argument("--format", choices=("png", "jpg"), default="png")
    parser.add_argument("--trigger", default="")
    parser.add_argument("--marker-prefix", default="")
    parser.add_argument("--panel-marker", default="")
    parser.add_argument("--overwrite-edited-captions", action="store_true")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--wait-for-lock",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when another build is writing into --out, wait up to this long for it (default: stop at once)",
    )
    if not demo:  # the demo always captions offline with the template backend
        _add_caption_args(parser.add_argument_group("captions"))


def _add_caption_args(captions) -> None:
    captions.add_argument(
        "--caption-endpoint",
        default="",
        help="template (default, offline), gemini, openai, or an "
        "endpoint added with `python -m mvic config add-endpoint`; each sends only its own key",
    )
    captions.add_argument(
        "--caption-backend",
        choices=("template", "gemini", "openai-compatible"),
        default="",
        help="older name of --caption-endpoint (openai-compatible = openai); with "
        "--caption-base-url, the protocol that server speaks",
    )
    captions.add_argument(
        "--caption-base-url",
        default="",
        help="a server for this run only; it gets no key from the environment (give --key-file if it needs one)",
    )
    captions.add_argument("--key-file", default="", help="file holding only the key for this run's endpoint")
    captions.add_argument("--caption-model", default="", help="empty = the protocol's default model")
    captions.add_argument("--caption-concurrency", type=int, default=4)
    captions.add_argument("--caption-rpm", type=int, default=10, help="requests per minute (0 = no cap)")
    captions.add_argument(
        "--appearance-only", action="store_true", help="no pose words for panels the model is unsure about"
    )
    captions.add_argument("--caption-input", choices=("composite", "views"), default="composite")
    captions.add_argument(
        "--caption-cache-dir",
        default="",
        help="default: caption_cache_dir in the local settings, else ~/.cache/mvic/captions",
    )
    captions.add_argument(
        "--caption-deadline", type=float, default=DEFAULT_DEADLINE_S, help="seconds one request may take in all"
    )
    captions.add_argument(
        "--caption-max-response-mb",
        type=float,
        default=DEFAULT_MAX_RESPONSE_BYTES / 2**20,
        help="largest answer accepted from the server",
    )


def _caption_endpoint(args: argparse.Namespace, settings) -> Endpoint | None:
    """The endpoint this build sends to: a configured one by name, or (local power use) an ad-hoc
    --caption-base-url that gets no environment key. None = the template backend."""
    if args.caption_base_url:
        if args.caption_endpoint:
            raise ValueError("give --caption-endpoint NAME or --caption-base-url URL, not both")
        if not args.caption_base_url.startswith(("http://", "https://")):
            raise ValueError(f"--caption-base-url {args.caption_base_url!r}: give an http:// or https:// address")
        protocol = "gemini" if args.caption_backend == "gemini" else "openai-compatible"
        key_file = str(Path(args.key_file).expanduser().resolve()) if args.key_file else ""
        return Endpoint("command-line", protocol, args.caption_base_url.rstrip("/"), (), key_file)
    if args.caption_endpoint and args.caption_backend:
        raise ValueError("give --caption-endpoint (--caption-backend is its older name), not both")
    name = args.caption_endpoint or {"openai-compatible": "openai"}.get(args.caption_backend, args.caption_backend)
    if name in ("", "template"):
        return None
    endpoint = settings.endpoint(name)
    if args.key_file:  # the user pairs this key with this endpoint on their own command line
        endpoint = replace(endpoint, key_file=str(Path(args.key_file).expanduser().resolve()))
    return endpoint


def _caption_settings(args: argparse.Namespace) -> CaptionSettings:
    if args.command == "demo":
        return CaptionSettings()
    settings = load_settings()
    return CaptionSettings(
        endpoint=_caption_endpoint(args, settings),
        model=args.caption_model,
        concurrency=args.caption_concurrency,
        rpm=args.caption_rpm,
        appearance_only=args.appearance_only,
        input_mode=args.caption_input,
        cache_dir=args.caption_cache_dir or settings.caption_cache_dir,
        deadline_s=args.caption_deadline,
        max_response_bytes=int(args.caption_max_response_mb * 2**20),
    )


def _parser() -> argparse.ArgumentParser:
    installed = sys.argv and sys.argv[0].endswith(("/mvic", "\\mvic", "mvic.exe"))  # the command of `pip install .`
    prog = "mvic" if installed else "python -m mvic"
    parser = argparse.ArgumentParser(prog=prog, description="Multi-view IC-LoRA: dataset builder and trainer")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_build_args(
        commands.add_parser("build", help="source -> views -> composites -> captions -> dataset"), demo=False
    )
    _add_build_args(
        commands.add_parser("demo", help="the same on the embedded sample data (nothing to download, no key)"),
        demo=True,
    )
    training_cli.add_commands(commands)
    sampling_cli.add_commands(commands)
    config_cli.add_commands(commands)
    consistency_cli.add_commands(commands)
    return parser


def _build_settings(args):
    from .pipeline import BuildSettings

    rows, cols = _grid(args.grid)
    return BuildSettings(
        source="sample" if args.command == "demo" else args.source,
        input="" if args.command == "demo" else args.input,
        out=args.out,
        rows=rows,
        cols=cols,
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
        wait_for_lock=args.wait_for_lock,
    )


def main(argv: list[str] | None = None) -> int:
    from .pipeline import build_dataset

    args = _parser().parse_args(argv)
    if args.command == "config":
        try:
            return config_cli.run(args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
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
        build_dataset(_build_settings(args), log=print)
    except (ValueError, OSError, CaptionRunError, DatasetBusy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
