"""Compile FLUX block by block (runs inside sd-scripts' Python; launcher flag --compile-blocks).

sd-scripts' --torch_compile hands the whole model to accelerate, which traces all 57 blocks into one
graph: 224 s on the first run on an H200 (BENCHMARKS.md). The 19 double blocks share one forward, and
so do the 38 single blocks, so compiling each block module reuses one compiled graph per kind (torch's
"regional compilation"); the Python between blocks (sd-scripts' block swap, the embedders) stays
eager. The compile itself is lazy: it happens at the first step, after LoRA has wrapped the linears.

What is compiled is each block's `_forward`, not its `forward`: under gradient checkpointing sd-scripts'
`forward` is `checkpoint(self._forward, ...)`, and a compiled checkpoint kept the block's activations
(the 24 preset ran out of a 23 GiB cap in its first step on an H200; on the CPU a checkpointed
test model saved 7.3x the bytes of eager checkpointing). With `_forward` compiled, the checkpoint stays
eager and saves what it saves without compile. Block-swap hooks on the block stay eager too.
"""

from __future__ import annotations

import sys

import torch


def compile_blocks(model: torch.nn.Module, blocks: tuple[str, ...] = ("double_blocks", "single_blocks")) -> int:
    count = 0
    for name in blocks:
        for block in getattr(model, name):
            if hasattr(block, "_forward"):
                block._forward = torch.compile(block._forward)
            else:
                block.compile()
            count += 1
    return count


def install_compile_blocks() -> None:
    from library import flux_utils

    load_flow_model = flux_utils.load_flow_model

    def load_with_compiled_blocks(*args, **kwargs):
        loaded = load_flow_model(*args, **kwargs)
        count = compile_blocks(loaded[1])
        print(f"[mvic] torch.compile: {count} FLUX blocks, one graph per block kind", file=sys.stderr, flush=True)
        return loaded

    flux_utils.load_flow_model = load_with_compiled_blocks
