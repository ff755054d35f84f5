"""SaveICLoRADataset: write the training set sd-scripts / ai-toolkit read (mvic.export.dataset)."""

from __future__ import annotations

from comfy_api.latest import io

from ..mvic.export.dataset import IMAGE_FORMATS
from .comfy_io import category, confined_output_path, output_directory


class SaveICLoRADataset(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MVIC_SaveICLoRADataset",
            display_name="Save IC-LoRA Dataset",
            category=category("dataset"),
            description=(
                "Writes composites + marker captions, metadata.jsonl, an sd-scripts dataset TOML, an "
                "ai-toolkit YAML and a contact sheet."
            ),
            inputs=[
                io.Custom("MV_COMPOSITES").Input("composites", tooltip="captioned composites (Multi-View Captioner)"),
                io.String.Input("folder", default="iclora_dataset", tooltip="a folder inside ComfyUI's output/"),
                io.Combo.Input(
                    "image_format",
                    options=list(IMAGE_FORMATS),
                    default="png",
                    tooltip="file format of the composites; png keeps every pixel",
                ),
                io.String.Input("trigger", default="", optional=True, tooltip="word put before every caption"),
                io.Boolean.Input(
                    "overwrite_edited_captions",
                    default=False,
                    optional=True,
                    tooltip="replace captions you edited by hand (each kept in replaced/)",
                ),
                io.Int.Input(
                    "num_repeats",
                    default=1,
                    min=1,
                    max=1000,
                    optional=True,
                    tooltip="how often each composite counts per epoch (sd-scripts num_repeats)",
                ),
                io.String.Input(
                    "base_model",
                    default="black-forest-labs/FLUX.1-dev",
                    optional=True,
                    tooltip="ai-toolkit's name_or_path",
                ),
            ],
            outputs=[io.String.Output(display_name="dataset_dir"), io.String.Output(display_name="report")],
            is_output_node=True,
        )

    @classmethod
    def execute(
        cls,
        composites,
        folder,
        image_format,
        trigger="",
        overwrite_edited_captions=False,
        num_repeats=1,
        base_model="black-forest-labs/FLUX.1-dev",
    ) -> io.NodeOutput:
        from ..mvic.export.dataset import save_dataset

        target = confined_output_path(folder, "SaveICLoRADataset.folder")
        if target == output_directory().resolve():
            raise ValueError(f"SaveICLoRADataset.folder {folder!r} is the output folder itself: name a folder in it")
        report = save_dataset(
            composites,
            target,
            image_format,
            trigger,
            overwrite_edited_captions,
            num_repeats,
            base_model,
            tool="ComfyUI (SaveICLoRADataset)",
        )
        text = report.text()
        return io.NodeOutput(str(report.folder), text, ui={"text": [text]})


NODES = [SaveICLoRADataset]
