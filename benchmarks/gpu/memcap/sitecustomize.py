"""Cap this process's CUDA memory when MVIC_BENCH_CAP_GIB is set (used to provoke a real CUDA
out-of-memory error in sd-scripts for tests/fixtures/sdscripts_cuda_oom.log).

Put this folder on the child's PYTHONPATH (SD_SCRIPTS_PYTHONPATH=overlay:this folder).
PYTORCH_CUDA_ALLOC_CONF cannot cap memory; torch.cuda.set_per_process_memory_fraction can."""

import os

_cap = os.environ.get("MVIC_BENCH_CAP_GIB")
if _cap:
    try:
        import torch

        if torch.cuda.is_available():
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, float(_cap) * 2**30 / total), 0)
    except Exception as exc:  # noqa: BLE001 - never break the interpreter's start
        print(f"[memcap] not applied: {exc}")
