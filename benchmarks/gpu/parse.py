"""Numbers of one benchmark run from its files.

    python benchmarks/gpu/parse.py RUN_DIR [--name N] [--preset P] [--rc RC] [--from 10] [--to 60]
    python benchmarks/gpu/parse.py --table SUMMARY.jsonl      # markdown table of parsed runs

RUN_DIR holds (as benchmarks/gpu/bench.sh writes them):
  console.ts  our trainer's stdout (or sd-scripts' console for the plain baseline), each line
              `<seconds since launch>\t<text>` (tstamp.py)
  train.ts    sd-scripts' log (train.log) the same way, followed while it grew (our trainer only)
  smi.csv     `nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 250`
  end         seconds since launch when the command returned

Output: one JSON object:
  s_per_step_tqdm   (tqdm elapsed at step TO - at step FROM) / (TO - FROM)   [the issue's definition;
                    tqdm prints whole seconds, so +-1 s / (TO-FROM)]
  s_per_step_wall   the same from the lines' own timestamps (ms resolution)
  startup_s         launch -> the line that shows step 1 done (load + caching + compile + step 1)
  finish_s          the line that shows the last step -> the command returned (final save, metadata, copy)
  ttl_1000_s        startup_s + 999 * s_per_step + finish_s  (time to a 1000-step LoRA)
  peak_gib          highest memory.used nvidia-smi saw (GiB = 2**30 bytes), also peak_gb (1e9)
  milestones        first time each start-up phase appears in sd-scripts' log
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

STEP = re.compile(r"steps:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([\d:]+)<")
LOSS = re.compile(r"avr_loss=([-+\d.eE]+|nan|inf)")
MILESTONES = {
    "flux_build": r"Building Flux model",
    "flux_loaded": r"Loaded Flux",
    "t5_loaded": r"Loaded T5xxl",
    "latents_caching": r"caching latents\.\.\.",
    "te_caching": r"caching Text Encoder outputs\.\.\.",
    "fp8_prepare": r"prepare (?:Flux|DiT) for fp8|fp8",
    "optimizer": r"use .*optimizer|prepare optimizer",
    "steps_bar": r"steps:\s*0%",
}
OOM = re.compile(r"CUDA out of memory|OutOfMemoryError")


def read_ts(path: Path) -> list[tuple[float, str]]:
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            stamp, _, text = line.partition("\t")
            try:
                rows.append((float(stamp), text))
            except ValueError:
                continue
    return rows


def elapsed_seconds(text: str) -> int:
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def steps_from(rows: list[tuple[float, str]]) -> dict[int, tuple[float, int, float | None]]:
    """step -> (timestamp of the first line showing it, tqdm elapsed seconds, loss)."""
    steps: dict[int, tuple[float, int, float | None]] = {}
    for stamp, text in rows:
        match = STEP.search(text)
        if match:
            step = int(match.group(1))
            loss = LOSS.search(text)
            if step not in steps:
                steps[step] = (stamp, elapsed_seconds(match.group(3)), float(loss.group(1)) if loss else None)
            elif loss and steps[step][2] is None:
                steps[step] = (steps[step][0], steps[step][1], float(loss.group(1)))
    return steps


def peak_mib(path: Path) -> float | None:
    values = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                values.append(float(line.rsplit(",", 1)[1]))
            except (IndexError, ValueError):
                continue
    return max(values) if values else None


def parse_run(run_dir: Path, first: int = 10, last: int = 60) -> dict:
    console, train = read_ts(run_dir / "console.ts"), read_ts(run_dir / "train.ts")
    log_rows = train or console
    steps = steps_from(log_rows)
    result: dict = {"steps_seen": max(steps) if steps else 0}
    if first in steps and last in steps:
        result["s_per_step_tqdm"] = round((steps[last][1] - steps[first][1]) / (last - first), 3)
        result["s_per_step_wall"] = round((steps[last][0] - steps[first][0]) / (last - first), 4)
    if 1 in steps:
        result["startup_s"] = round(steps[1][0], 1)
    if 0 in steps:
        result["train_loop_start_s"] = round(steps[0][0], 1)
    end_file = run_dir / "end"
    end = float(end_file.read_text()) if end_file.is_file() else (console[-1][0] if console else None)
    if end is not None:
        result["total_s"] = round(end, 1)
        if steps:
            result["finish_s"] = round(end - steps[max(steps)][0], 1)
    rate = result.get("s_per_step_wall")
    if rate and "startup_s" in result and "finish_s" in result:
        result["ttl_1000_s"] = round(result["startup_s"] + 999 * rate + result["finish_s"], 1)
    losses = [v[2] for k, v in sorted(steps.items()) if v[2] is not None]
    if losses:
        result["last_loss"] = losses[-1]
    mib = peak_mib(run_dir / "smi.csv")
    if mib is not None:
        result["peak_gib"] = round(mib * 2**20 / 2**30, 2)
        result["peak_gb"] = round(mib * 2**20 / 1e9, 2)
    result["milestones"] = {}
    for key, pattern in MILESTONES.items():
        for stamp, text in log_rows:
            if re.search(pattern, text):
                result["milestones"][key] = round(stamp, 1)
                break
    result["out_of_memory"] = any(OOM.search(text) for _, text in log_rows)
    for stamp, text in console:
        if "error:" in text.lower() and "[mvic]" not in text:
            result.setdefault("errors", []).append(text.strip()[:300])
    return result


def table(summary: Path) -> str:
    rows = [json.loads(line) for line in summary.read_text().splitlines() if line.strip()]
    out = [
        "| run | preset | extra | s/step (wall) | s/step (tqdm) | peak GiB | start-up s | finish s | 1000-step TTL "
        "| rc |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ttl = r.get("ttl_1000_s")
        out.append(
            f"| {r.get('name')} | {r.get('preset')} | {r.get('extra', '')} | {r.get('s_per_step_wall', '-')} | "
            f"{r.get('s_per_step_tqdm', '-')} | {r.get('peak_gib', '-')} | {r.get('startup_s', '-')} | "
            f"{r.get('finish_s', '-')} | "
            f"{'%.0f s (%.1f min)' % (ttl, ttl / 60) if ttl else '-'} | {r.get('rc')} |"
        )
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--table")
    parser.add_argument("--name", default="")
    parser.add_argument("--preset", default="")
    parser.add_argument("--extra", default="")
    parser.add_argument("--rc", type=int, default=None)
    parser.add_argument("--from", dest="first", type=int, default=10)
    parser.add_argument("--to", dest="last", type=int, default=60)
    args = parser.parse_args(argv)
    if args.table:
        print(table(Path(args.table)))
        return 0
    result = {"name": args.name, "preset": args.preset, "extra": args.extra, "rc": args.rc}
    result.update(parse_run(Path(args.run_dir), args.first, args.last))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
