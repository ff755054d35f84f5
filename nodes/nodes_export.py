"""SaveICLoRADataset: write the training set sd-scripts / ai-toolkit read (mvic.export.dataset)."""
from __future__ import annotations

from ..mvic.export.dataset import IMAGE_FORMATS
from .comfy_io import confined_output_path, output_directory


class SaveICLoRADataset:
    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = "Writes composites + marker captions, metadata.jsonl, an sd-scripts dataset TOML, an ai-toolkit YAML and a contact sheet."
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("dataset_dir", "report")
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "composites": ("MV_COMPOSITES",),
                "folder": ("STRING", {"default": "iclora_dataset", "tooltip": "a folder inside ComfyUI's output/"}),
                "image_format": (list(IMAGE_FORMATS), {"default": "png"}),
            },
            "optional": {
                "trigger": ("STRING", {"default": "", "tooltip": "word put before every caption"}),
                "overwrite_edited_captions": ("BOOLEAN", {
                    "default": False, "tooltip": "replace captions you edited by hand (each kept in replaced/)"}),
                "num_repeats": ("INT", {"default": 1, "min": 1, "max": 1000}),
                "base_model": ("STRING", {"default": "black-forest-labs/FLUX.1-dev", "tooltip": "ai-toolkit's name_or_path"}),
            },
        }

    def save(self, composites, folder, image_format, trigger="", overwrite_edited_captions=False, num_repeats=1, base_model="black-forest-labs/FLUX.1-dev"):
        from ..mvic.export.dataset import save_dataset

        target = confined_output_path(folder, "SaveICLoRADataset.folder")
        if target == output_directory().resolve():
            raise ValueError(f"SaveICLoRADataset.folder {folder!r} is the output folder itself: name a folder in it")
        report = save_dataset(
            composites, target, image_format, trigger, overwrite_edited_captions, num_repeats, base_model,
            tool="ComfyUI (SaveICLoRADataset)",
        )
        text = report.text()
        return {"ui": {"text": [text]}, "result": (str(report.folder), text)}


NODE_CLASS_MAPPINGS = {"MVIC_SaveICLoRADataset": SaveICLoRADataset}
NODE_DISPLAY_NAME_MAPPINGS = {"MVIC_SaveICLoRADataset": "SaveICLoRADataset"}
