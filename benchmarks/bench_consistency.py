"""Consistency-score benchmark (issue 12): one 2x2 composite of 512² panels, scored on ONE core.

Goal: < 1 s per composite. Both wall time and the process's CPU time are shown: on a shared machine
the wall time includes waiting for the core, the CPU time does not. Composites are renders of the
validation scenes (tests/consistency_scenes.py): a true set (4 views 60-90 degrees apart), a mixed
set (4 scenes) and a repeated set (one view x4: duplicates skip the matching). The process pins itself to one CPU,
OpenCV and BLAS to one thread.
Prints a table and one JSON line.

    python benchmarks/bench_consistency.py [--repeats 7]
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy loads its BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def composites() -> dict:
    import consistency_scenes as scenes
    from packload import mvic_module

    layout = mvic_module("layout")
    grid = layout.CompositeLayout(2, 2, 512, 512)
    true_views = [scenes.true_set(seed, size=512)[0] for seed in range(4)]
    return {
        "true set": layout.compose(true_views[0], grid),
        "mixed set": layout.compose([true_views[k][k] for k in range(4)], grid),
        "repeated set": layout.compose(scenes.repeat_view(true_views[1][0], 4, seed=1), grid),
    }


def stage_times(image) -> dict:
    """One run split into the stages (for the table)."""
    from packload import mvic_module

    score, features = mvic_module("consistency.score"), mvic_module("consistency.features")
    grid, lay = mvic_module("consistency.grid"), mvic_module("layout")
    settings = score.DEFAULT_SETTINGS
    views = lay.split(image, 2, 2)
    started = time.perf_counter()
    grid.check_grid(image, 2, 2)
    after_grid = time.perf_counter()
    greys = [features.analysis_grey(v, settings.analysis_size) for v in views]
    [features.panel_features(g, settings) for g in greys]
    after_features = time.perf_counter()
    return {"grid": after_grid - started, "features": after_features - after_grid}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2
    from packload import mvic_module

    cv2.setNumThreads(1)
    consistency = mvic_module("consistency")
    results = {}
    for name, image in composites().items():
        consistency.score_composite(image, 2, 2)  # warm-up: imports, OpenCV's first calls
        times, cpu = [], []
        for _ in range(args.repeats):
            started, started_cpu = time.perf_counter(), time.process_time()
            score = consistency.score_composite(image, 2, 2)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
        stages = stage_times(image)
        results[name] = {
            "median_s": statistics.median(times),
            "max_s": max(times),
            "cpu_median_s": statistics.median(cpu),
            "consistency": score.consistency,
            "duplicate_pairs": score.duplicate_pairs,
            **{f"{k}_s": v for k, v in stages.items()},
        }
    print(f"one core ({os.sched_getaffinity(0)}), cv2 {cv2.__version__}, {args.repeats} runs each, 2x2 of 512² panels")
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(
        f"{'composite':<14}{'wall median s':>14}{'wall max s':>11}{'CPU median s':>13}{'grid s':>8}{'SIFT s':>8}"
        f"{'score':>7}{'dups':>6}"
    )
    for name, r in results.items():
        print(
            f"{name:<14}{r['median_s']:>14.3f}{r['max_s']:>11.3f}{r['cpu_median_s']:>13.3f}{r['grid_s']:>8.3f}"
            f"{r['features_s']:>8.3f}"
            f"{r['consistency']:>7.2f}{r['duplicate_pairs']:>6}"
        )
    print("JSON " + json.dumps({"cv2": cv2.__version__, "load_average": os.getloadavg()[0], "results": results}))
    return 0 if all(r["median_s"] < 1.0 for r in results.values()) else 1  # the goal is wall time on one core


if __name__ == "__main__":
    raise SystemExit(main())
