"""Profile a few real training steps inside sd-scripts when MVIC_BENCH_PROFILE=START:COUNT:DIR.

Put this folder on the child's PYTHONPATH (bench.sh option profile=START:COUNT). A global
optimizer-step hook counts steps; after step START it starts torch.profiler, after START+COUNT
it stops and writes DIR/profile.txt: wall time per step (CUDA-synchronised, profiler on), GPU
kernel time per step split into matrix products, attention, and the rest, and the top kernels
and operators. Nothing in sd-scripts is changed; steps outside the window run unprofiled."""

import os
import time

_spec = os.environ.get("MVIC_BENCH_PROFILE")


def _kind(name: str) -> str:
    low = name.lower()
    if any(k in low for k in ("flash", "fmha", "attention", "sdpa", "cudnn_attn")):
        return "attention"
    if any(k in low for k in ("gemm", "xmma", "cutlass", "nvjet", "cublas", "sm90_", "wgmma")):
        return "matmul"
    if any(k in low for k in ("layer_norm", "layernorm", "rms_norm", "norm")):
        return "norm"
    if any(k in low for k in ("copy", "cast", "convert", "to_copy")):
        return "copy/cast"
    if any(k in low for k in ("adam", "multi_tensor", "foreach")):
        return "optimizer"
    return "elementwise/other"


def _report(prof, wall: float, steps: int, path: str) -> None:
    from torch.autograd import DeviceType

    rows = prof.key_averages()
    kernels, kinds = [], {}
    for row in rows:
        if row.device_type != DeviceType.CUDA:
            continue
        t = getattr(row, "self_device_time_total", None) or getattr(row, "self_cuda_time_total", 0)
        kernels.append((t, row.count, row.key))
        kinds[_kind(row.key)] = kinds.get(_kind(row.key), 0) + t
    total = sum(t for t, _, _ in kernels)
    lines = [
        f"profiled steps: {steps}; wall per step (profiler on, synchronised): {wall / steps:.4f} s",
        f"GPU kernel time per step: {total / 1e6 / steps:.4f} s ({100 * total / 1e6 / wall:.1f} % of wall)",
        "",
        "by kind (per step):",
    ]
    for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {kind:18s} {t / 1e6 / steps:8.4f} s  {100 * t / max(total, 1):5.1f} %")
    lines += ["", "top kernels (per step, ms, calls per step):"]
    for t, count, key in sorted(kernels, reverse=True)[:30]:
        lines.append(f"  {t / 1e3 / steps:9.2f} ms {count / steps:7.1f}  {key[:140]}")
    sort_key = "self_device_time_total" if hasattr(rows[0], "self_device_time_total") else "self_cuda_time_total"
    lines += ["", "operators:", rows.table(sort_by=sort_key, row_limit=40, max_name_column_width=60)]
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
    print("[profile] " + "\n[profile] ".join(lines[:12]), flush=True)


if _spec:
    try:
        import torch
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _start, _count, _dir = _spec.split(":", 2)
        _start, _count = int(_start), int(_count)
        _state = {"step": 0, "prof": None, "t0": 0.0}
        _cuda = torch.cuda.is_available()
        _sync = torch.cuda.synchronize if _cuda else (lambda: None)
        _activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if _cuda else [])

        def _hook(optimizer, args, kwargs):
            _state["step"] += 1
            step = _state["step"]
            if step == _start:
                _sync()
                _state["prof"] = torch.profiler.profile(activities=_activities)
                _state["prof"].__enter__()
                _state["t0"] = time.perf_counter()
            elif step == _start + _count and _state["prof"] is not None:
                _sync()
                wall = time.perf_counter() - _state["t0"]
                prof, _state["prof"] = _state["prof"], None
                prof.__exit__(None, None, None)
                os.makedirs(_dir, exist_ok=True)
                _report(prof, wall, _count, os.path.join(_dir, "profile.txt"))

        register_optimizer_step_post_hook(_hook)
    except Exception as exc:  # noqa: BLE001 - never break the interpreter's start
        print(f"[profile] not installed: {exc}")
