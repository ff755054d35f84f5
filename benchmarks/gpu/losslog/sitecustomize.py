"""Write every training step's loss to MVIC_BENCH_LOSSLOG (one number a line) inside sd-scripts.

Put this folder on the child's PYTHONPATH (bench.sh option losslog). sd-scripts prints only a moving
average (avr_loss, 3 digits); the quality guard (bf16 vs FP8, same seed) compares per-step losses.
The loss is the only 0-dim tensor sd-scripts calls .backward() on; sd-scripts reads loss.item()
every step itself, so this adds no synchronisation."""

import os

_path = os.environ.get("MVIC_BENCH_LOSSLOG")
if _path:
    try:
        import torch

        _backward = torch.Tensor.backward

        def _logged_backward(self, *args, **kwargs):
            if self.dim() == 0:
                with open(_path, "a") as out:
                    out.write(f"{self.detach().float().item()!r}\n")
            return _backward(self, *args, **kwargs)

        torch.Tensor.backward = _logged_backward
    except Exception as exc:  # noqa: BLE001 - never break the interpreter's start
        print(f"[losslog] not installed: {exc}")
