"""LoRATrainer: train the IC-LoRA with the user's sd-scripts in its own Python (mvic.training).

A workflow is untrusted: which sd-scripts runs is a name configured on this machine (the
sd_scripts_dir dropdown), extra_args pass an allow-list only, model files come from ComfyUI's
model folders and the dataset from output/ (or a folder allowed in the local settings). Those
widgets are checked first, when the prompt is queued (VALIDATE_INPUTS) and again when it runs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..mvic.training.preflight import CAPTION_CHOICES
from ..mvic.training.presets import PRESET_CHOICES
from .comfy_io import (
    Progress, confined_model_path, confined_output_path, free_comfy_memory, images_to_tensor,
    interrupt_requested, local_settings, loras_folder, model_choices, model_path, output_directory,
)

NONE = "(use path input)"
DEFAULT_TRAINER = "(default)"  # mvic.training.environment.DEFAULT_TRAINER, without importing it at start-up
DEFAULT_DATASET = "iclora_dataset"
MODEL_WIDGETS = (("flux_path", "diffusion_models"), ("clip_l_path", "text_encoders"), ("t5xxl_path", "text_encoders"),
                 ("ae_path", "vae"))


def _files(folder: str) -> list[str]:
    return [NONE, *model_choices(folder)]


def _trainer_choices() -> list[str]:
    """The dropdown: '(default)' and every checkout configured on this machine (a broken settings
    file must not break ComfyUI's node list: the error comes when the node runs)."""
    try:
        return [DEFAULT_TRAINER, *sorted(local_settings().trainers)]
    except Exception:  # noqa: BLE001 - INPUT_TYPES must never raise (ComfyUI would drop the node)
        return [DEFAULT_TRAINER]


def dataset_folder(text: str | None, settings) -> Path:
    """dataset_dir: relative to ComfyUI's output folder; absolute only inside it or an allowed folder."""
    from ..mvic.paths import confined_input

    return confined_input(text.strip() or DEFAULT_DATASET, output_directory(), "LoRATrainer.dataset_dir",
                          settings.readable_folders())


def check_untrusted_widgets(settings, sd_scripts_dir, extra_args, dataset_dir, paths: dict[str, str | None]) -> None:
    """Raise (naming the widget and how to allow it locally) for what a workflow may not decide.
    `None` values are inputs fed by links (unknown at queue time)."""
    from ..mvic.training.environment import check_trainer_choice
    from ..mvic.training.extra_args import check_extra_args

    if sd_scripts_dir is not None:
        check_trainer_choice(sd_scripts_dir, settings)
    if extra_args is not None:
        check_extra_args(extra_args)
    if dataset_dir is not None:
        dataset_folder(dataset_dir, settings)
    for name, kind in MODEL_WIDGETS:
        if (paths.get(name) or "").strip():
            confined_model_path(paths[name], kind, f"LoRATrainer.{name}")


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
        in_folder = "empty: the dropdown; else a file inside ComfyUI's {} folders"
        return {
            "required": {
                "dataset_dir": ("STRING", {"default": "", "tooltip": "connect SaveICLoRADataset's dataset_dir; "
                                                                     "relative paths start in output/"}),
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
                "extra_args": ("STRING", {"default": "", "multiline": True, "tooltip": (
                    "more training options (optimizer, scheduler, noise, timestep sampling...); "
                    "options naming files, outputs or services are refused")}),
                "sd_scripts_dir": (_trainer_choices(), {"default": DEFAULT_TRAINER, "tooltip": (
                    "which sd-scripts checkout runs: one configured on this machine (python -m mvic setup-trainer); "
                    "(default): SD_SCRIPTS_DIR or the settings' default")}),
                "gpu_ids": ("STRING", {"default": "", "tooltip": "e.g. 0,1 for two GPUs; empty = default"}),
                "flux_path": ("STRING", {"default": "", "tooltip": in_folder.format("diffusion_models")}),
                "clip_l_path": ("STRING", {"default": "", "tooltip": in_folder.format("text_encoders")}),
                "t5xxl_path": ("STRING", {"default": "", "tooltip": in_folder.format("text_encoders")}),
                "ae_path": ("STRING", {"default": "", "tooltip": in_folder.format("vae")}),
                "compile": (["auto", "on", "off"], {"default": "auto", "tooltip": "torch.compile: auto = only when the steps repay the compile time (80 GB preset)"}),
                "fp8_matmul": (["auto", "on", "off"], {"default": "auto", "tooltip": "FP8 products for the frozen FLUX weights (RTX 40xx, H100 and newer); auto = where measured faster"}),
                "caption_problems": (list(CAPTION_CHOICES), {"default": "refuse", "tooltip": (
                    "images without captions, or captions whose markers don't match the layout: "
                    "refuse to train (listing them), or warn and train")}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, sd_scripts_dir=None, extra_args=None, dataset_dir=None, flux_path=None, clip_l_path=None,
                        t5xxl_path=None, ae_path=None):
        """At queue time, before any node runs: the widgets a workflow may not decide. (ComfyUI then
        leaves sd_scripts_dir's list check to us: '' from workflows saved before it was a list means
        the default.)"""
        paths = {"flux_path": flux_path, "clip_l_path": clip_l_path, "t5xxl_path": t5xxl_path, "ae_path": ae_path}
        try:
            check_untrusted_widgets(local_settings(), sd_scripts_dir, extra_args, dataset_dir, paths)
        except (ValueError, RuntimeError) as exc:
            return str(exc)
        return True

    @classmethod
    def IS_CHANGED(cls, dataset_dir=None, **settings):
        """Re-train when the dataset (images, captions) or any setting changes. ComfyUI passes
        linked inputs as None here: then the upstream saver's own signature covers the data.
        Never raises: an unreadable dataset makes the node run, and train() says what is wrong."""
        try:
            return _signature(dataset_dir, settings)
        except Exception:  # noqa: BLE001 - e.g. a dangling link or a refused path: run, and report there
            return float("nan")  # never equal to itself: the node runs

    def train(self, dataset_dir, flux_model, clip_l, t5xxl, ae, lora_name, steps, rank, learning_rate, vram_preset,
              alpha=16.0, seed=42, save_every_n_steps=250, sample_every_n_steps=0, loras_subfolder="mvic", extra_args="",
              sd_scripts_dir=DEFAULT_TRAINER, gpu_ids="", flux_path="", clip_l_path="", t5xxl_path="", ae_path="",
              compile="auto", fp8_matmul="auto", caption_problems="refuse"):
        from ..mvic.files import safe_name
        from ..mvic.flux_files import FluxModelFiles
        from ..mvic.training.arguments import TrainingSettings
        from ..mvic.training.environment import resolve_trainer
        from ..mvic.training.loss_curve import loss_curve_image
        from ..mvic.training.multi_gpu import parse_gpu_ids
        from ..mvic.training.previews import watcher_for
        from ..mvic.training.trainer import TrainingCallbacks, train_lora

        settings = local_settings()
        paths = {"flux_path": flux_path, "clip_l_path": clip_l_path, "t5xxl_path": t5xxl_path, "ae_path": ae_path}
        check_untrusted_widgets(settings, sd_scripts_dir, extra_args, dataset_dir, paths)  # first, before anything else
        models = FluxModelFiles(*(_model_file(choice, paths[name], kind, name) for choice, (name, kind)
                                  in zip((flux_model, clip_l, t5xxl, ae), MODEL_WIDGETS)))
        name = safe_name(lora_name, "iclora")
        training = TrainingSettings(
            dataset_dir=dataset_folder(dataset_dir, settings), models=models, output_name=name,
            run_dir=confined_output_path(f"mvic_runs/{name}", "LoRATrainer.lora_name"),
            steps=steps, rank=rank, alpha=alpha, learning_rate=learning_rate, seed=seed,
            save_every_n_steps=save_every_n_steps, sample_every_n_steps=sample_every_n_steps, extra_args=extra_args,
            gpu_ids=parse_gpu_ids(gpu_ids), compile=compile, fp8_matmul=fp8_matmul,
        )
        environment = resolve_trainer(sd_scripts_dir, settings)
        free_comfy_memory()
        progress = Progress(steps)
        watcher = watcher_for(training, on_preview=lambda image, record: progress.show(record.step, steps, image))

        def on_progress(p):
            progress(p.step, p.total)
            watcher.poll()  # sd-scripts' new previews: scored, shown live

        callbacks = TrainingCallbacks(on_progress=on_progress, should_stop=interrupt_requested)
        loras = loras_folder() / safe_name(loras_subfolder, "mvic")
        result = train_lora(training, environment, loras, name, vram_preset, callbacks,
                            caption_problems=caption_problems)
        curve = images_to_tensor([loss_curve_image(result.losses)])
        previews = watcher.finish(name)
        text = f"LoRA: {result.lora_path} (preset {result.preset.name}" + (f", resumed at step {result.resumed_from_step}" if result.resumed_from_step else "") + ")"
        if result.warnings:
            text += f"\ntrained anyway with {len(result.warnings)} caption problem(s):\n" + "\n".join(result.warnings)
        scores = (images_to_tensor([previews.curve]), str(previews.best_checkpoint or ""))
        return {"ui": {"text": [text, previews.text]}, "result": (str(result.lora_path), curve, str(result.run_dir), *scores)}


def _model_file(choice: str, path: str, kind: str, widget: str) -> Path:
    what = widget[: -len("_path")]
    if path.strip():
        return confined_model_path(path, kind, f"LoRATrainer.{widget}")
    if choice != NONE:
        return Path(model_path(kind, choice))
    raise ValueError(f"LoRATrainer: choose the {what} file (dropdown) or give {widget} "
                     f"(a file in ComfyUI's {kind} folders)")


def _signature(dataset_dir, settings: dict) -> str:
    digest = hashlib.sha256(repr(sorted(settings.items())).encode())
    if dataset_dir is None:
        return digest.hexdigest()
    folder = dataset_folder(dataset_dir, local_settings())
    for name in ("metadata.jsonl", "dataset.toml"):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    for path in sorted((folder / "images").iterdir()) if (folder / "images").is_dir() else []:
        if path.suffix == ".txt" and path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
        elif path.is_file():
            stat = path.stat()  # images: a replaced file changes size or time; hashing them would be slow
            digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


NODE_CLASS_MAPPINGS = {"MVIC_LoRATrainer": LoRATrainer}
NODE_DISPLAY_NAME_MAPPINGS = {"MVIC_LoRATrainer": "LoRATrainer"}
