"""trainers/cpu_precision.py: what a CPU-only training run without native bf16 computes in."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in a child: install() patches torch for the whole process, as it does in sd-scripts' child.
CHECK = """
import sys, torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
import cpu_precision
x, w = torch.randn(8, 64), torch.randn(32, 64)
exact = F.linear(x.bfloat16().float(), w.bfloat16().float())
cpu_precision.install()
class Dtypes(torch.overrides.TorchFunctionMode):  # the dtypes torch's own linear is called with
    seen = []
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") == "linear":
            self.seen.append((args[0].dtype, args[1].dtype))
        return func(*args, **(kwargs or {}))
with Dtypes():
    out = F.linear(x.bfloat16(), w.bfloat16())
assert Dtypes.seen == [(torch.float32, torch.float32)], Dtypes.seen
assert out.dtype == torch.bfloat16, out.dtype
assert torch.allclose(out.float(), exact, rtol=1e-2, atol=1e-2)
with torch.autocast("cpu", dtype=torch.bfloat16):  # training's own autocast keeps its dtype
    assert F.linear(x, w.bfloat16()).dtype == torch.bfloat16
with torch.autocast("cpu"):  # dtype-less, as in sd-scripts' grad-norm logging: fp32
    assert (x @ w.t()).dtype == torch.float32
assert F.linear(x, w).dtype == torch.float32  # fp32 stays fp32
print("ok")
"""


def test_install_computes_linears_in_fp32_and_keeps_the_callers_dtypes():
    out = subprocess.run(
        [sys.executable, "-c", CHECK, str(ROOT / "trainers")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
