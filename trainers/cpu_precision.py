"""CPU-only runs on a CPU without native bf16 (AVX2 only, e.g. AMD Zen 3): compute in fp32, store in bf16.

Torch-only, shared by the two programs that run FLUX outside ComfyUI: sd-scripts runs (imported by
launch_sd_scripts.py, installed for the whole run) and the headless diffusers sampler (loaded by file,
`fp32_compute()` around one call). CPU runs are the tests' tiny models; on such a CPU torch's bf16 matmuls
and convolutions take a slow path (measured on the 2-core test machine, one thread: a 320x3072x12288 linear
10.7 s in bf16, 2.7 s in fp32; a 3x3 128-channel convolution at 64x64 3.9 s in bf16, 0.07 s in fp32; a
backward 400 s per training step). Weights stay bf16 in memory; each call casts its operands for itself.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref

import torch
import torch.nn.functional as F

_HALF = (torch.bfloat16, torch.float16)


def needs_fp32_compute() -> bool:
    """A CPU-only run on a CPU whose bf16 matmuls are emulated."""
    return not torch.cuda.is_available() and not torch.ops.mkldnn._is_mkldnn_bf16_supported()


class _Scratch:
    """One fp32 buffer that inference reuses for each weight it widens. A fresh fp32 copy per call is a new
    allocation the size of the weight, which glibc maps and unmaps every time: the page faults and the
    zeroing cost more than the product when a few tokens pass a large weight (the T5-XXL caching captions)."""

    buffer = torch.empty(0)

    @classmethod
    def widen(cls, weight: torch.Tensor) -> torch.Tensor:
        if cls.buffer.numel() < weight.numel():
            cls.buffer = torch.empty(weight.numel())
        return cls.buffer[: weight.numel()].view(weight.shape).copy_(weight)


class _Frozen:
    """fp32 copies of frozen weights (a LoRA's base linears), kept for the run: training widens each one
    again in every forward, recomputation and backward, and a fresh copy of the tiny FLUX's 0.5 G weights
    costs ~2.6 s in page faults alone here. A copy is made again when its weight changed (in place: torch's
    version counter; swapped `.data`: another storage or dtype) and dropped when the weight is freed; past
    LIMIT_BYTES (a full-size model on a CPU) weights get fresh copies."""

    LIMIT_BYTES = 4 << 30
    copies: dict[int, tuple[tuple, torch.Tensor]] = {}  # id(weight) -> (what the copy was made of, copy)

    @classmethod
    def widen(cls, weight: torch.Tensor) -> torch.Tensor:
        made_of = (weight._version, weight.data_ptr(), weight.dtype)
        kept = cls.copies.get(id(weight))
        if kept is not None and kept[0] == made_of:
            return kept[1]
        cls.copies.pop(id(weight), None)
        if sum(copy.numel() for _, copy in cls.copies.values()) * 4 + weight.numel() * 4 > cls.LIMIT_BYTES:
            return weight.float()
        if kept is None:  # first sight: forget it when it is freed (its id may then name another tensor)
            weakref.finalize(weight, cls.copies.pop, id(weight), None)
        copy = weight.float()  # never changed in place: autograd may keep it for any number of backwards
        cls.copies[id(weight)] = (made_of, copy)
        return copy


def _widen(weight: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """`weight` in fp32: into the reused buffer when nothing keeps it for a backward pass (no autograd
    graph is built, and torch.compile traces no global buffer), else the frozen weight's kept copy, or
    a copy of its own for a weight that trains."""
    if weight.dtype == torch.float32 or torch.compiler.is_compiling():
        return weight.float()
    if torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad):
        return weight.float() if weight.requires_grad else _Frozen.widen(weight)
    return _Scratch.widen(weight)


def _weight_first(linear):
    """F.linear computed as weight @ input^T: MKL multiplies a few rows by a large weight faster this way
    round (measured on the 2-core test machine: 64x4096 rows by a 10240x4096 weight, 0.24-0.40 s instead of
    0.42-0.77; 256 rows, 0.58-0.75 s instead of 0.90-1.05)."""

    def op(input, weight, bias=None):
        if torch.compiler.is_compiling():
            return linear(input, weight, bias)
        rows = input.reshape(-1, input.shape[-1])
        out = torch.mm(weight, rows.t()).t().contiguous()  # later views (heads, tokens) need rows contiguous
        if bias is not None:
            out = out + bias
        return out.view(*input.shape[:-1], weight.shape[0])

    return op


def _in_fp32(half_op, fp32_op=None):
    """`half_op` (F.linear, F.conv2d) computing in fp32 (with `fp32_op`, default `half_op`) on CPU when an
    operand is 16-bit or CPU autocast is on; the result has the input's dtype (bf16 under autocast, as
    autocast would give)."""
    fp32_op = fp32_op or half_op

    def op(input, weight, bias=None, *args, **kwargs):
        autocast = torch.is_autocast_enabled("cpu")
        if input.device.type != "cpu" or not (autocast or input.dtype in _HALF or weight.dtype in _HALF):
            return half_op(input, weight, bias, *args, **kwargs)
        out_dtype = torch.bfloat16 if autocast else input.dtype
        with torch.autocast("cpu", enabled=False):
            fp32_bias = None if bias is None else bias.float()
            out = fp32_op(input.float(), _widen(weight, input), fp32_bias, *args, **kwargs)
        return out.to(out_dtype)

    return op


def install() -> None:
    """Linears and 2-D convolutions compute in fp32; dtype-less CPU autocast (sd-scripts' LoRA grad-norm
    logging) turns fp32."""
    F.linear, F.conv2d = _in_fp32(F.linear, _weight_first(F.linear)), _in_fp32(F.conv2d)
    # networks/lora_flux.py update_grad_norms runs under torch.autocast("cpu") with no dtype, i.e. bf16
    # (~37 s a step here); training's own autocast names its dtype (accelerate), so only such calls change.
    torch.set_autocast_dtype("cpu", torch.float32)
    # torch says once that it "disables autocast" for fp32: that is the point, not a problem to report.
    warnings.filterwarnings("ignore", message="In CPU autocast, but the target dtype is not supported")


@contextlib.contextmanager
def fp32_compute():
    """install() for the duration of a `with` block, then torch as it was (for a caller that shares its
    process, like the headless sampler called from tests)."""
    saved = F.linear, F.conv2d, torch.get_autocast_dtype("cpu")
    install()
    try:
        yield
    finally:
        F.linear, F.conv2d = saved[:2]
        torch.set_autocast_dtype("cpu", saved[2])
        _Scratch.buffer = torch.empty(0)  # the caller's process goes on: give back the widened weights' memory
        _Frozen.copies.clear()
