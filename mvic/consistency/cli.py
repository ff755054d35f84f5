"""`python -m mvic score PATH`: consistency scores of composites, as JSON and an annotated contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(commands) -> None:
    score = commands.add_parser("score", help="multi-view consistency of composites (JSON + annotated contact sheet)")
    score.add_argument("path", help="a folder of composites, a dataset folder (layout from its manifest) or one image")
    score.add_argument("--grid", default="", help="ROWSxCOLS of the composites; default: from the dataset manifest")
    score.add_argument("--divider", type=int, default=0, help="divider width in pixels painted between panels")
    score.add_argument("--json", default="consistency_scores.json", help="where to write the scores (a JSON list)")
    score.add_argument("--sheet", default="", help="annotated contact sheet PNG (default: the JSON path with .png)")
    score.add_argument(
        "--similarity-model",
        default="",
        help="local DINOv2 / CLIP model folder for the optional learned similarity (else MVIC_SIMILARITY_MODEL)",
    )


def run(args: argparse.Namespace) -> int:
    from .batch import find_jobs, parse_grid, score_job, write_outputs
    from .learned import configured_similarity

    json_path = Path(args.json).expanduser()
    sheet_path = Path(args.sheet).expanduser() if args.sheet else json_path.with_suffix(".png")
    grid = parse_grid(args.grid) if args.grid else None
    jobs = find_jobs(args.path, grid, args.divider, exclude=(json_path, sheet_path))
    learned, note = configured_similarity(args.similarity_model)
    print(note)
    results = []
    for number, job in enumerate(jobs, start=1):
        result = score_job(job, learned=learned, note=note)
        text = result.score.summary() if result.score else f"error: {result.error}"
        print(f"[{number}/{len(jobs)}] {job.name}: {text}", flush=True)
        results.append(result)
    write_outputs(results, json_path, sheet_path)
    scored = [r.score.consistency for r in results if r.score]
    mean = f", mean consistency {sum(scored) / len(scored):.2f}" if scored else ""
    print(f"scored {len(scored)} of {len(jobs)} composite(s){mean}; wrote {json_path} and {sheet_path}")
    return 0 if scored else 1
