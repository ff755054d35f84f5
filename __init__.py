"""ComfyUI-MultiView-ICLoRA: multi-view image sets with In-Context LoRA on FLUX.

ComfyUI imports this file by path, under the folder's name; the core library is
then `<pack>.mvic` (relative imports only), never a top-level `mvic`, so one
process holds one copy of every dataclass. The CLI (`python -m mvic`) runs the
core alone as `mvic` and never imports the nodes.
"""
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
