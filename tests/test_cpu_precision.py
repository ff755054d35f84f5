"""trainers/cpu_precision.py: what a CPU-only run (training, headless sampling) without native bf16 computes in."""

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
class Dtypes(torch.overrides.TorchFunctionMode):  # the dtypes torch's own product (linear, mm) gets
    seen = []
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("linear", "mm", "conv2d"):
            self.seen.append((args[0].dtype, args[1].dtype))
        return func(*args, **(kwargs or {}))
with Dtypes():
    out = F.linear(x.bfloat16(), w.bfloat16())
assert Dtypes.seen == [(torch.float32, torch.float32)], Dtypes.seen
assert out.dtype == torch.bfloat16, out.dtype
assert torch.allclose(out.float(), exact, rtol=1e-2, atol=5e-2)  # out is rounded to bf16
with torch.autocast("cpu", dtype=torch.bfloat16):  # training's own autocast keeps its dtype
    assert F.linear(x, w.bfloat16()).dtype == torch.bfloat16
with torch.autocast("cpu"):  # dtype-less, as in sd-scripts' grad-norm logging: fp32
    assert (x @ w.t()).dtype == torch.float32
assert F.linear(x, w).dtype == torch.float32  # fp32 stays fp32
image, kernel = torch.randn(1, 4, 8, 8).bfloat16(), torch.randn(4, 4, 3, 3).bfloat16()
Dtypes.seen.clear()
with Dtypes():
    assert torch.nn.functional.conv2d(image, kernel, None, 1, 1).dtype == torch.bfloat16
assert Dtypes.seen == [(torch.float32, torch.float32)], Dtypes.seen
# Inference widens each weight into one reused buffer; a product that autograd keeps gets its own copy.
w2 = torch.randn(48, 64)
with torch.no_grad():
    first, second = F.linear(x, w.bfloat16()), F.linear(x, w2.bfloat16())
assert torch.allclose(first, x @ w.bfloat16().float().t(), atol=1e-4)
assert torch.allclose(second, x @ w2.bfloat16().float().t(), atol=1e-4)
xg = x.clone().requires_grad_()
kept = F.linear(xg, w.bfloat16())
F.linear(x, w2.bfloat16())  # would overwrite a shared buffer before the backward below
kept.sum().backward()
assert torch.allclose(xg.grad, w.bfloat16().float().sum(0).expand_as(x), atol=1e-4)
batched, bias = torch.randn(2, 5, 64), torch.randn(32)  # batch dimensions and a bias, as nn.Linear has them
out = F.linear(batched.bfloat16(), w.bfloat16(), bias.bfloat16())
assert out.shape == (2, 5, 32) and out.is_contiguous() and out.dtype == torch.bfloat16
exact = batched.bfloat16().float() @ w.bfloat16().float().t() + bias.bfloat16().float()
assert torch.allclose(out.float(), exact, rtol=1e-2, atol=5e-2)  # out is rounded to bf16
assert F.linear(x[0].bfloat16(), w.bfloat16()).shape == (32,)
# Training: a frozen weight is widened once and its copy kept; a change to it in place makes a new copy.
cpu_precision._Frozen.copies.clear()
frozen = torch.randn(32, 64).bfloat16()
xg = x.clone().requires_grad_()
(F.linear(xg, frozen).sum() + F.linear(xg, frozen).sum()).backward()
assert len(cpu_precision._Frozen.copies) == 1
copy = next(iter(cpu_precision._Frozen.copies.values()))[1]
assert torch.equal(copy, frozen.float()) and torch.allclose(xg.grad, 2 * frozen.float().sum(0).expand_as(x), atol=1e-3)
with torch.no_grad():
    frozen.mul_(2)
xg.grad = None
F.linear(xg, frozen).sum().backward()
assert torch.allclose(xg.grad, frozen.float().sum(0).expand_as(x), atol=1e-3)  # the doubled weight
assert torch.equal(next(iter(cpu_precision._Frozen.copies.values()))[1], frozen.float())
frozen.data = torch.randn(32, 64).bfloat16()  # swapped storage (as Module.to() does): a new copy too
xg.grad = None
F.linear(xg, frozen).sum().backward()
assert torch.allclose(xg.grad, frozen.float().sum(0).expand_as(x), atol=1e-3)
del frozen, copy
assert not cpu_precision._Frozen.copies  # a freed weight's copy goes with it
trained = torch.randn(32, 64).bfloat16().requires_grad_()  # a weight that trains: a copy per call, none kept
F.linear(xg, trained).sum().backward()
assert not cpu_precision._Frozen.copies and trained.grad is not None
print("ok")
"""

# The sampler's way: for one block, then torch as it was.
SCOPED = """
import sys, torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
import cpu_precision
linear, conv2d = F.linear, F.conv2d
with cpu_precision.fp32_compute():
    assert F.linear is not linear and F.conv2d is not conv2d
    with torch.autocast("cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.float32
    with torch.no_grad():
        F.linear(torch.randn(2, 64), torch.randn(32, 64).bfloat16())
    assert cpu_precision._Scratch.buffer.numel() == 32 * 64
    frozen = torch.randn(32, 64).bfloat16()
    F.linear(torch.randn(2, 64, requires_grad=True), frozen).sum().backward()
    assert len(cpu_precision._Frozen.copies) == 1
assert F.linear is linear and F.conv2d is conv2d
assert torch.get_autocast_dtype("cpu") == torch.bfloat16
assert cpu_precision._Scratch.buffer.numel() == 0  # the widened weights' buffer is given back too
assert not cpu_precision._Frozen.copies  # and the kept copies
print("ok")
"""


def run_check(code: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "trainers")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_install_computes_linears_and_convolutions_in_fp32_and_keeps_the_callers_dtypes():
    run_check(CHECK)


def test_fp32_compute_restores_torch_after_its_block():
    run_check(SCOPED)
