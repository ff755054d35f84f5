"""Quality guard: the same data, seed and steps trained in bf16 and with FP8 matmuls.

    python benchmarks/gpu/compare_runs.py --losses A.txt B.txt --loras A.safetensors B.safetensors [--last 100]
    [--json OUT]

Losses (one per step, benchmarks/gpu/losslog): mean over the last N steps of each run and their
relative difference (goal: within 2 %), plus the per-step correlation. LoRAs (sd-scripts' lora_flux
files): per module, the cosine similarity of the weight change it makes, dW = up @ down (scaled by
alpha / rank, equal in both), and of its up and down matrices; the mean over modules (goal >= 0.95).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def read_losses(path: str) -> list[float]:
    return [float(line) for line in Path(path).read_text().split()]


def compare_losses(a: list[float], b: list[float], last: int) -> dict:
    n = min(len(a), len(b))
    mean_a, mean_b = statistics.fmean(a[n - last : n]), statistics.fmean(b[n - last : n])
    corr = statistics.correlation(a[:n], b[:n]) if n > 2 else float("nan")
    return {
        "steps": n,
        "last": last,
        "mean_a": round(mean_a, 5),
        "mean_b": round(mean_b, 5),
        "rel_diff": round(abs(mean_b - mean_a) / abs(mean_a), 5),
        "per_step_correlation": round(corr, 4),
        "max_abs_step_diff": round(max(abs(x - y) for x, y in zip(a[:n], b[:n])), 5),
    }


def compare_loras(path_a: str, path_b: str) -> dict:
    import torch
    from safetensors.torch import load_file

    device = "cuda" if torch.cuda.is_available() else "cpu"
    a, b = load_file(path_a, device=device), load_file(path_b, device=device)
    modules = sorted(k[: -len(".lora_up.weight")] for k in a if k.endswith(".lora_up.weight"))

    def cos(x, y):
        x, y = x.double().flatten(), y.double().flatten()
        return (x @ y / (x.norm() * y.norm()).clamp(min=1e-30)).item()

    delta, ups, downs = {}, [], []
    for m in modules:
        up_a, up_b = a[f"{m}.lora_up.weight"].double(), b[f"{m}.lora_up.weight"].double()
        down_a, down_b = a[f"{m}.lora_down.weight"].double(), b[f"{m}.lora_down.weight"].double()
        delta[m] = cos(up_a @ down_a, up_b @ down_b)
        ups.append(cos(up_a, up_b))
        downs.append(cos(down_a, down_b))
    worst = sorted(delta.items(), key=lambda kv: kv[1])[:5]
    return {
        "modules": len(modules),
        "mean_cos_delta_w": round(statistics.fmean(delta.values()), 5),
        "min_cos_delta_w": round(min(delta.values()), 5),
        "mean_cos_up": round(statistics.fmean(ups), 5),
        "mean_cos_down": round(statistics.fmean(downs), 5),
        "worst": [(k, round(v, 4)) for k, v in worst],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--losses", nargs=2, required=True)
    parser.add_argument("--loras", nargs=2, default=None)
    parser.add_argument("--last", type=int, default=100)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    report = {"losses": compare_losses(read_losses(args.losses[0]), read_losses(args.losses[1]), args.last)}
    if args.loras:
        report["loras"] = compare_loras(*args.loras)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
