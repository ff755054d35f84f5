"""Check and time trainers/fp8_linear.py on the GPU, before any training run.

    python benchmarks/gpu/fp8_check.py [--json OUT.json]

1. Correctness on FLUX shapes (4608 tokens x 3072 -> 12288, and back): forward and input gradient
   against a float64 reference, fresh random inputs with rows of different scale; NaN never passes.
2. Time, per training step of FLUX.1-dev at 1024^2 (4096 image + 512 text tokens, batch 1): the
   frozen token linears' forward + input gradient (no weight gradient), as sd-scripts runs them
   (bf16 under autocast) against the FP8 linear, eager and compiled (the quantisation fused). CUDA
   events, median of repeats. The issue's microbenchmark: bf16 0.161 s, FP8 0.088 s per step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "trainers"))
import fp8_linear  # noqa: E402

# (tokens, in, out, layers per step): FLUX.1-dev token linears (double blocks: img 4096 + txt 512 tokens)
SHAPES = [
    (4096, 3072, 9216, 19),
    (4096, 3072, 3072, 19),
    (4096, 3072, 12288, 19),
    (4096, 12288, 3072, 19),
    (512, 3072, 9216, 19),
    (512, 3072, 3072, 19),
    (512, 3072, 12288, 19),
    (512, 12288, 3072, 19),
    (4608, 3072, 21504, 38),
    (4608, 15360, 3072, 38),
]


def rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref).norm() / ref.norm()).item()


def correctness() -> dict:
    results = {}
    for tokens, n_in, n_out in ((4608, 3072, 12288), (4608, 12288, 3072)):
        linear = torch.nn.Linear(n_in, n_out, device="cuda", dtype=torch.bfloat16)
        torch.nn.init.normal_(linear.weight, std=0.5 / n_in**0.5)
        fast = fp8_linear.Linear.from_linear(linear)
        x = (torch.randn(tokens, n_in, device="cuda") * (1 + 10 * torch.rand(tokens, 1, device="cuda"))).requires_grad_(
            True
        )
        out = fast(x)
        grad = torch.randn(tokens, n_out, device="cuda")
        out.backward(grad.to(out.dtype))
        w = linear.weight.double()
        fwd = rel(out, torch.nn.functional.linear(x.double(), w, linear.bias.double()))
        bwd = rel(x.grad, grad.double() @ w)
        ok = torch.isfinite(out).all().item() and torch.isfinite(x.grad).all().item() and fwd < 0.06 and bwd < 0.06
        results[f"{tokens}x{n_in}->{n_out}"] = {
            "forward_rel_err": round(fwd, 4),
            "input_grad_rel_err": round(bwd, 4),
            "ok": ok,
        }
    return results


def median_ms(fn, repeats: int = 10) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def step_time(make_layer, compiled: bool) -> float:
    """Seconds per training step: forward + input gradient over every token linear of FLUX."""
    total = 0.0
    for tokens, n_in, n_out, count in SHAPES:
        layer = make_layer(n_in, n_out)
        x = torch.randn(tokens, n_in, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn(tokens, n_out, device="cuda", dtype=torch.bfloat16)

        def run(x=x):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = layer(x)
            out.backward(grad)

        fn = torch.compile(run) if compiled else run
        total += median_ms(fn) * count / 1000
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    print(
        f"{torch.cuda.get_device_name()} cc {torch.cuda.get_device_capability()} torch {torch.__version__}", flush=True
    )
    print("fp8 unavailable:", fp8_linear.fp8_unavailable_reason())
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "correctness": correctness()}
    print(json.dumps(report["correctness"]), flush=True)

    def bf16(n_in, n_out):  # sd-scripts' fp8_base stores fp8 and computes in bf16: same products
        return torch.nn.Linear(n_in, n_out, device="cuda", dtype=torch.bfloat16).requires_grad_(False)

    def fp8(n_in, n_out):
        return fp8_linear.Linear.from_linear(bf16(n_in, n_out))

    timing = {}
    torch._dynamo.config.cache_size_limit = 64  # one small graph per shape
    for name, make, compiled in (("bf16 eager", bf16, False), ("fp8 eager", fp8, False), ("fp8 compiled", fp8, True)):
        timing[name] = round(step_time(make, compiled), 4)
        print(f"token linears, forward + input gradient per step: {name:14s} {timing[name]:.4f} s", flush=True)
    report["linears_s_per_step"] = timing
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if all(r["ok"] for r in report["correctness"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
