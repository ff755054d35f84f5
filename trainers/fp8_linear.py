"""FP8 matrix products for the frozen FLUX linears (runs inside sd-scripts' Python).

A LoRA run never trains the base weights, so each frozen linear needs only its forward product and the
gradient with respect to its input. Both run as `torch._scaled_mm` on FP8 tensor cores:

    forward   y  = x @ W.T + b        x quantised per row (e4m3), W per output channel (e4m3, once)
    backward  dx = (dy * s_W) @ W_q   dy (times W's channel scales) quantised per row (e4m3)

Row-wise scales keep quantisation to one pass over a row, which torch.compile fuses into the kernel
that produces the row (the issue's measurement: per-tensor scaling in separate kernels costs more than
the FP8 product saves). Gradients use e4m3 too, as torchao's row-wise recipe does: with one scale per
row, e4m3's extra mantissa bit matters more than e5m2's range. Nothing is saved for backward except
the FP8 weight, so activations cost no memory here. The LoRA branch that sd-scripts wraps around
`forward` stays in bf16.

The class is called `Linear` on purpose: sd-scripts' networks/lora_flux.py picks the layers it wraps
by class name ("Linear"), and it must keep wrapping these.
"""

from __future__ import annotations

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448
MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (8.9), Hopper (9.0), Blackwell (10.x, 12.x)
_ALIGN = 16  # _scaled_mm needs every matrix dimension divisible by 16


def fp8_unavailable_reason(device: torch.device | str | None = None) -> str | None:
    """Why FP8 matmuls cannot run on `device` (default: the current CUDA device), or None."""
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    index = torch.device(device).index if device is not None and torch.device(device).type == "cuda" else None
    major, minor = torch.cuda.get_device_capability(index)
    if (major, minor) < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(index)
        return (
            f"{name} has compute capability {major}.{minor}; FP8 tensor cores need 8.9 or newer "
            "(Ada, Hopper, Blackwell)"
        )
    return None


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) -> e4m3 values and float32 scales of shape (rows, 1), so that x ~= q * scale."""
    amax = x.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / E4M3_MAX
    q = (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return q, scale


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) weight -> e4m3 weight and (1, out) float32 channel scales. A weight that is already
    e4m3 (an fp8 checkpoint, or sd-scripts' --fp8_base cast) is kept bit for bit with scales of one."""
    if weight.dtype == E4M3:
        return weight, torch.ones((1, weight.shape[0]), dtype=torch.float32, device=weight.device)
    q, scale = quantize_rows(weight)
    return q, scale.reshape(1, -1).contiguous()


class _FP8Matmul(torch.autograd.Function):
    """x @ W.T with an FP8 weight; gradient for x only (the weight is frozen)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        xq, x_scale = quantize_rows(rows)
        out = torch._scaled_mm(xq, weight.t(), scale_a=x_scale, scale_b=weight_scale, out_dtype=torch.bfloat16)
        ctx.save_for_backward(weight, weight_scale)
        ctx.input_dtype = x.dtype
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        weight, weight_scale = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        rows = grad.reshape(-1, grad.shape[-1])
        # W's channel scales run along the contraction here: fold them into the gradient's rows.
        gq, g_scale = quantize_rows(rows.float() * weight_scale)
        ones = torch.ones((1, weight.shape[1]), dtype=torch.float32, device=weight.device)
        # _scaled_mm wants its second operand column-major: W (out, in) transposed once, in FP8.
        dx = torch._scaled_mm(gq, weight.t().contiguous().t(), scale_a=g_scale, scale_b=ones, out_dtype=torch.bfloat16)
        return dx.reshape(*grad.shape[:-1], weight.shape[1]).to(ctx.input_dtype), None, None


class Linear(torch.nn.Linear):
    """A frozen nn.Linear whose weight is stored in e4m3 with channel scales and multiplied in FP8.

    Keeps its storage dtypes when the model is cast (sd-scripts calls `model.to(dtype)` for fp8_base
    and mixed precision): only device moves apply. sd-scripts' block swap moves `.weight` alone
    between CPU and GPU; the scales and bias stay on the GPU with the block."""

    def __init__(self, weight: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None):
        torch.nn.Module.__init__(self)
        self.out_features, self.in_features = weight.shape
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.register_buffer("weight_scale", weight_scale, persistent=False)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, work_device: torch.device | str | None = None) -> "Linear":
        """Quantise `linear`'s weight (on `work_device` when given, e.g. the GPU; the result goes back
        to where the weight was)."""
        home = linear.weight.device
        weight = linear.weight.detach()
        q, scale = quantize_weight(weight.to(work_device) if work_device is not None else weight)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        return cls(q.to(home), scale.to(home), bias)

    def dequantized(self, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return (self.weight.float() * self.weight_scale.t()).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if rows % _ALIGN or self.in_features % _ALIGN or self.out_features % _ALIGN or rows == 0:
            out = torch.nn.functional.linear(x.to(torch.bfloat16), self.dequantized())  # odd shapes: bf16
        else:
            out = _FP8Matmul.apply(x, self.weight, self.weight_scale)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def _apply(self, fn, recurse=True):
        # Whatever `fn` would do to a float tensor, take only its device.
        device = fn(torch.zeros(1, device=self.weight.device)).device
        if device != self.weight.device or (self.bias is not None and self.bias.device != device):
            self.weight.data = self.weight.data.to(device)
            if self.bias is not None:
                self.bias.data = self.bias.data.to(device)
        if self.weight_scale.device != device:
            self.weight_scale = self.weight_scale.to(device)
        return self

    def extra_repr(self) -> str:
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}, fp8=e4m3"


def is_token_linear(parent: torch.nn.Module, module: torch.nn.Module) -> bool:
    """FLUX linears that act on every image/text token (where the FLOPs are). Modulation linears act
    on one vector per sample (and would need 16 rows): they stay as they are."""
    return type(module) is torch.nn.Linear and type(parent).__name__ != "Modulation"


def swap_linears(
    model: torch.nn.Module,
    blocks: tuple[str, ...] = ("double_blocks", "single_blocks"),
    work_device: torch.device | str | None = None,
) -> int:
    """Replace the token linears inside `model`'s transformer blocks by FP8 `Linear`s; returns how many."""
    count = 0
    for block_list in blocks:
        for parent in getattr(model, block_list).modules():
            for child_name, child in list(parent.named_children()):
                if is_token_linear(parent, child):
                    setattr(parent, child_name, Linear.from_linear(child, work_device))
                    count += 1
    return count
