"""ComfyUI-MultiView-ICLoRA: multi-view image sets with In-Context LoRA on FLUX.

ComfyUI imports this file by path, under the folder's name; the core library is
then `<pack>.mvic` (relative imports only), never a top-level `mvic`, so one
process holds one copy of every dataclass. The nodes use ComfyUI's V3 schema
(`comfy_api.latest`) and register through `comfy_entrypoint`; the pack exports no
NODE_CLASS_MAPPINGS (ComfyUI would then take the classic path). The CLI
(`python -m mvic`) runs the core alone as `mvic` and never imports the nodes.
"""


async def comfy_entrypoint():
    """ComfyUI's V3 registration. The nodes (and ComfyUI's comfy_api) are imported only here, so the core
    `<pack>.mvic` loads without ComfyUI (tests, tools)."""
    try:
        from .nodes import comfy_entrypoint as nodes_entrypoint
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("comfy_api"):
            raise
        raise ImportError(
            "ComfyUI-MultiView-ICLoRA is a ComfyUI custom node pack (it needs ComfyUI's comfy_api): put this "
            "folder in ComfyUI's custom_nodes/; without ComfyUI use the core alone: python -m mvic --help"
        ) from exc
    return await nodes_entrypoint()


__all__ = ["comfy_entrypoint"]
