"""ComfyUI nodes: thin wrappers over `mvic`, one file per pipeline stage."""
from . import nodes_captions, nodes_consistency, nodes_export, nodes_layout, nodes_sampling, nodes_sources, nodes_training

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
for _module in (nodes_sources, nodes_layout, nodes_captions, nodes_export, nodes_training, nodes_sampling,
                nodes_consistency):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
