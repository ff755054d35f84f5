"""Composite-building benchmark (issue 2): MVImgNet-layout phone frames (1080x1920 JPEG),
4 views -> 1024x1024 2x2 composites saved as PNG.

Compares, on the same input and in one run:
  baseline  - a plain loop: full decode, centre-crop resize, paste, PNG save (default level)
  mvic x1   - our path (draft decode, fit, compose, dataset export) on 1 worker
  mvic xN   - the same on all cores
Each variant runs in its own process so its peak RSS is its own.

    python benchmarks/bench_composites.py [--sets 24] [--frames 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def make_input(root: Path, sets: int, frames: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for s in range(sets):
        folder = root / "12" / f"inst{s:03d}" / "images"
        folder.mkdir(parents=True)
        for f in range(frames):
            base = rng.integers(0, 256, (48, 27, 3), dtype=np.uint8)
            image = Image.fromarray(base).resize((1080, 1920), Image.Resampling.BICUBIC)
            noise = rng.integers(-12, 12, (1920, 1080, 3))
            image = Image.fromarray(np.clip(np.asarray(image, np.int16) + noise, 0, 255).astype(np.uint8))
            image.save(folder / f"{f:03d}.jpg", quality=90)


def run_baseline(root: Path, out: Path) -> int:
    """What a straightforward script does."""
    from PIL import Image

    from packload import mvic_module

    sets = mvic_module("loading").load_multiview_sets("mvimgnet", root, 4, selection="frame_order")
    out.mkdir(parents=True, exist_ok=True)
    for mv_set in sets.sets:
        canvas = Image.new("RGB", (1024, 1024))
        for i, frame in enumerate(mv_set.chosen_frames):
            image = Image.open(frame.path).convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            panel = image.crop((left, top, left + side, top + side)).resize((512, 512), Image.Resampling.LANCZOS)
            canvas.paste(panel, ((i % 2) * 512, (i // 2) * 512))
        canvas.save(out / f"{mv_set.name.replace('/', '_')}.png")
    return len(sets.sets)


def run_mvic(root: Path, out: Path, workers: int) -> int:
    from packload import mvic_module

    layout = mvic_module("layout").CompositeLayout(2, 2, 512, 512)
    sets = mvic_module("loading").load_multiview_sets("mvimgnet", root, 4, selection="frame_order")
    composites = mvic_module("composites").build_composites(sets, layout, workers=workers)
    mvic_module("export.dataset").save_dataset(composites, out, workers=workers)
    return len(composites.items)


def child(variant: str, root: str, out: str, workers: int) -> None:
    start = time.perf_counter()
    count = run_baseline(Path(root), Path(out)) if variant == "baseline" else run_mvic(Path(root), Path(out), workers)
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork+exec.
    status = Path("/proc/self/status").read_text()
    peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
    print(
        json.dumps({"variant": variant, "workers": workers, "composites": count, "seconds": seconds, "peak_mib": peak})
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", type=int, default=24)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args()
    if args.child:
        variant, root, out, workers = args.child
        return child(variant, root, out, int(workers))
    work = Path(tempfile.mkdtemp(prefix="mvic-bench-"))
    try:
        print(
            f"input: {args.sets} sets x {args.frames} frames of 1080x1920 JPEG (MVImgNet layout); cores: "
            f"{os.cpu_count()}"
        )
        make_input(work / "in", args.sets, args.frames)
        results = []
        for variant, workers in (("baseline", 1), ("mvic", 1), ("mvic", os.cpu_count() or 1)):
            out = work / f"out-{variant}-{workers}"
            line = (
                subprocess.run(
                    [sys.executable, __file__, "--child", variant, str(work / "in"), str(out), str(workers)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            result = json.loads(line)
            results.append(result)
            rate = result["composites"] / result["seconds"]
            print(
                f"{variant:8s} workers={workers}: {result['composites']} composites in {result['seconds']:.2f} s = "
                f"{rate:.2f}/s, peak RSS {result['peak_mib']:.0f} MiB"
            )
        base = results[0]["composites"] / results[0]["seconds"]
        for result in results[1:]:
            print(
                f"speed-up mvic workers={result['workers']} vs baseline: "
                f"{result['composites'] / result['seconds'] / base:.2f}x"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
