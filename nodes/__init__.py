"""ComfyUI nodes (V3 schema, comfy_api.latest): thin wrappers over `mvic`, one file per pipeline stage."""

from comfy_api.latest import ComfyExtension, io

from . import (
    nodes_captions,
    nodes_consistency,
    nodes_export,
    nodes_layout,
    nodes_sampling,
    nodes_sources,
    nodes_training,
)

NODES: list[type[io.ComfyNode]] = [
    *nodes_sources.NODES,
    *nodes_layout.NODES,
    *nodes_captions.NODES,
    *nodes_export.NODES,
    *nodes_training.NODES,
    *nodes_sampling.NODES,
    *nodes_consistency.NODES,
]


class MultiViewICLoRA(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> ComfyExtension:
    return MultiViewICLoRA()


def nodes_by_id() -> dict[str, type[io.ComfyNode]]:
    """node ID (what a workflow names, e.g. MVIC_LoRATrainer) -> node class, as ComfyUI registers them."""
    return {node.GET_SCHEMA().node_id: node for node in NODES}
