"""LoRATrainer: train the IC-LoRA with the user's sd-scripts in its own Python (mvic.training)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..mvic.training.presets import PRESET_CHOICES
from .comfy_io import (
    Progress, free_comfy_memory, images_to_tensor, interrupt_requested, loras_folder, model_choices, model_path, resolve_output_path,
)

NONE = "(use path input)"


def _files(folder: str) -> list[str]:
    return [NONE, *model_choices(folder)]


class LoRATrainer:
    CATEGORY = "MultiView ICLoRA"
    DESCRIPTION = "Trains a FLUX IC-LoRA on a SaveICLoRADataset folder with kohya sd-scripts (subprocess, its own Python)."
    RETURN_TYPES = ("STRING", "IMAGE", "STRING", "IMAGE", "STRING")
    RETURN_NAMES = ("lora_path", "loss_curve", "run_dir", "consistency_curve", "best_checkpoint")
    FUNCTION = "train"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        diffusion = _files("diffusion_models")
        text = _files("text_encoders")
        return {
            "required": {
                "dataset_dir": ("STRING", {"default": "", "tooltip": "connect SaveICLoRADataset's dataset_dir"}),
                "flux_model": (diffusion, {"default": NONE}),
                "clip_l": (text, {"default": NONE}),
                "t5xxl": (text, {"default": NONE}),
                "ae": (_files("vae"), {"default": NONE}),
                "lora_name": ("STRING", {"default": "multiview_iclora"}),
                "steps": ("INT", {"default": 1000, "min": 1, "max": 100000}),
                "rank": ("INT", {"default": 16, "min": 1, "max": 256}),
                "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 1e-2, "step": 1e-5, "round": False}),
                "vram_preset": (list(PRESET_CHOICES), {"default": "auto"}),
            },
            "optional": {
                "alpha": ("FLOAT", {"default": 16.0, "min": 0.1, "max": 256.0}),
                "seed": ("INT", {"default": 42, "min": 0, "max": 2**31 - 1}),
                "save_every_n_steps": ("INT", {"default": 250, "min": 0, "max": 100000, "tooltip": "0 = only at the end"}),
                "sample_every_n_steps": ("INT", {"default": 0, "min": 0, "max": 100000, "tooltip": "previews from held-out captions; 0 = none"}),
                "loras_subfolder": ("STRING", {"default": "mvic"}),
                "extra_args": ("STRING", {"default": "", "multiline": True, "tooltip": "more sd-scripts arguments, checked by its own parser"}),
                "sd_scripts_dir": ("STRING", {"default": "", "tooltip": "empty: SD_SCRIPTS_DIR or the pack's mvic_config.json"}),
                "gpu_ids": ("STRING", {"default": "", "tooltip": "e.g. 0,1 for two GPUs; empty = default"}),
                "flux_path": ("STRING", {"default": ""}),
                "clip_l_path": ("STRING", {"default": ""}),
                "t5xxl_path": ("STRING", {"default": ""}),
                "ae_path": ("STRING", {"default": ""}),
                "compile": (["auto", "on", "off"], {"default": "auto", "tooltip": "torch.compile: auto = only when the steps repay the compile time (80 GB preset)"}),
            },
        }

    @classmethod
    def IS_CHANGED(cls, dataset_dir=None, **settings):
        """Re-train when the dataset (images, captions) or any setting changes. ComfyUI passes
        linked inputs as None here: then the upstream saver's own signature covers the data."""
        digest = hashlib.sha256(repr(sorted(settings.items())).encode())
        if dataset_dir is None:
            return digest.hexdigest()
        folder = resolve_output_path(dataset_dir)
        for name in ("metadata.jsonl", "dataset.toml"):
            if (folder / name).is_file():
                digest.update((folder / name).read_bytes())
        for caption in sorted((folder / "images").glob("*.txt")):
            digest.update(caption.read_bytes())
        return digest.hexdigest()

    def train(self, dataset_dir, flux_model, clip_l, t5xxl, ae, lora_name, steps, rank, learning_rate, vram_preset,
              alpha=16.0, seed=42, save_every_n_steps=250, sample_every_n_steps=0, loras_subfolder="mvic", extra_args="",
              sd_scripts_dir="", gpu_ids="", flux_path="", clip_l_path="", t5xxl_path="", ae_path="", compile="auto"):
        from ..mvic.sources.common import safe_name
        from ..mvic.training.arguments import FluxModelFiles, TrainingSettings
        from ..mvic.training.environment import find_environment
        from ..mvic.training.loss_curve import loss_curve_image
        from ..mvic.training.previews import watcher_for
        from ..mvic.training.trainer import TrainingCallbacks, train_lora

        def pick(choice, path, folder, what):
            chosen = path.strip() or (model_path(folder, choice) if choice != NONE else "")
            if not chosen:
                raise ValueError(f"LoRATrainer: choose the {what} file (dropdown) or give {what}_path")
            return Path(chosen)

        models = FluxModelFiles(
            flux=pick(flux_model, flux_path, "diffusion_models", "flux"),
            clip_l=pick(clip_l, clip_l_path, "text_encoders", "clip_l"),
            t5xxl=pick(t5xxl, t5xxl_path, "text_encoders", "t5xxl"),
            ae=pick(ae, ae_path, "vae", "ae"),
        )
        name = safe_name(lora_name, "iclora")
        settings = TrainingSettings(
            dataset_dir=resolve_output_path(dataset_dir), models=models, run_dir=resolve_output_path(f"mvic_runs/{name}"), output_name=name,
            steps=steps, rank=rank, alpha=alpha, learning_rate=learning_rate, seed=seed,
            save_every_n_steps=save_every_n_steps, sample_every_n_steps=sample_every_n_steps, extra_args=extra_args,
            gpu_ids=tuple(int(i) for i in gpu_ids.replace(" ", "").split(",") if i), compile=compile,
        )
        environment = find_environment(sd_scripts_dir)
        free_comfy_memory()
        progress = Progress(steps)
        watcher = watcher_for(settings, on_preview=lambda image, record: progress.show(record.step, steps, image))

        def on_progress(p):
            progress(p.step, p.total)
            watcher.poll()  # sd-scripts' new previews: scored, shown live

        callbacks = TrainingCallbacks(on_progress=on_progress, should_stop=interrupt_requested)
        result = train_lora(settings, environment, loras_folder() / safe_name(loras_subfolder, "mvic"), name, vram_preset, callbacks)
        curve = images_to_tensor([loss_curve_image(result.losses)])
        previews = watcher.finish(name)
        text = f"LoRA: {result.lora_path} (preset {result.preset.name}" + (f", resumed at step {result.resumed_from_step}" if result.resumed_from_step else "") + ")"
        scores = (images_to_tensor([previews.curve]), str(previews.best_checkpoint or ""))
        return {"ui": {"text": [text, previews.text]}, "result": (str(result.lora_path), curve, str(result.run_dir), *scores)}


NODE_CLASS_MAPPINGS = {"MVIC_LoRATrainer": LoRATrainer}
NODE_DISPLAY_NAME_MAPPINGS = {"MVIC_LoRATrainer": "LoRATrainer"}
