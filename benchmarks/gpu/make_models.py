"""Full-size random FLUX.1-dev geometry for the GPU benchmark, generated on the GPU machine.

    python benchmarks/gpu/make_models.py DIR

writes into DIR (skipping files that already exist with the right size):

* random-flux1-dev-full-bf16.safetensors -- FLUX.1-dev transformer, BFL key layout, 19 double +
  38 single blocks, hidden 3072, 24 heads, guidance embedding (11.9 G params, 23.8 GB bf16).
  Random weights drawn on the GPU (normal(0, 0.5/sqrt(fan_in)), biases zero as sparse holes,
  norm scales one) and streamed to disk tensor by tensor; a writer thread overlaps the disk.
* random-clip-l-fp16-v1.safetensors, random-flux-ae-fp32-v1.safetensors,
  zero-t5xxl-fp16-v1.safetensors -- the full-size CLIP-L, AE and all-zero sparse T5-XXL of
  tests/tiny_models.py (the same tensor lists; those three are made on the CPU).

Prints one JSON line per file (path, size, seconds). Needs torch; CUDA if present (else CPU, slowly).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

import tiny_models  # noqa: E402  (tests/tiny_models.py: tensor lists in BFL / HF layout)

FLUX_NAME = "random-flux1-dev-full-bf16.safetensors"
FLUX_DEPTH, FLUX_DEPTH_SINGLE = 19, 38


def _write_flux(path: Path) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    specs = tiny_models.flux_specs(depth=FLUX_DEPTH, depth_single=FLUX_DEPTH_SINGLE)
    meta = {"format": "pt", "generator": "mvic benchmarks/gpu/make_models.py", "model": "random-flux1-dev-full"}
    head, data_size = tiny_models._layout(specs, "bfloat16", meta)
    chunks: queue.Queue = queue.Queue(maxsize=4)
    tmp = path.with_name(f".{path.name}.tmp")

    def writer() -> None:
        with open(tmp, "wb") as f:
            f.write(head)
            while (item := chunks.get()) is not None:
                if isinstance(item, int):
                    f.seek(item, os.SEEK_CUR)  # zero tensor -> sparse hole
                else:
                    f.write(memoryview(item.numpy()))
            f.truncate(len(head) + data_size)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for name, shape, init in specs:
            numel = 1
            for d in shape:
                numel *= d
            if init == "zeros":
                chunks.put(numel * 2)
                continue
            if init == "ones":
                t = torch.ones(numel, dtype=torch.bfloat16, device=device)
            else:
                fan_in = 1
                for d in shape[1:]:
                    fan_in *= d
                std = 0.02 if init == "emb" else tiny_models._INIT_GAIN / fan_in**0.5
                g = torch.Generator(device=device).manual_seed(tiny_models._seed("random-flux1-dev-full", name))
                t = (
                    torch.empty(numel, dtype=torch.float32, device=device)
                    .normal_(0.0, std, generator=g)
                    .to(torch.bfloat16)
                )
            chunks.put(t.view(torch.uint8).cpu())
    finally:
        chunks.put(None)
        thread.join()
    os.replace(tmp, path)


def flux_full(directory: Path) -> Path:
    specs = tiny_models.flux_specs(depth=FLUX_DEPTH, depth_single=FLUX_DEPTH_SINGLE)
    head, data_size = tiny_models._layout(
        specs,
        "bfloat16",
        {"format": "pt", "generator": "mvic benchmarks/gpu/make_models.py", "model": "random-flux1-dev-full"},
    )
    path = directory / FLUX_NAME
    if not (path.is_file() and path.stat().st_size == len(head) + data_size):
        _write_flux(path)
    return path


def main(argv: list[str]) -> int:
    directory = Path(argv[0] if argv else "models").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for key, make in (
        ("flux", flux_full),
        ("clip_l", tiny_models.tiny_clip_l),
        ("ae", tiny_models.tiny_ae),
        ("t5xxl", tiny_models.zero_t5xxl),
    ):
        start = time.time()
        path = Path(make(directory))
        st = path.stat()
        print(
            json.dumps(
                {
                    "model": key,
                    "path": str(path),
                    "bytes": st.st_size,
                    "on_disk": st.st_blocks * 512,
                    "seconds": round(time.time() - start, 1),
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
