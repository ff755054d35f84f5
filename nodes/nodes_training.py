"""LoRATrainer: train the IC-LoRA with the user's sd-scripts in its own Python (mvic.training).

A workflow is untrusted: which sd-scripts runs is a name configured on this machine (the
sd_scripts_dir dropdown), extra_args pass an allow-list only, model files come from ComfyUI's
model folders and the dataset from output/ (or a folder allowed in the local settings). Those
widgets are checked first, when the prompt is queued (validate_inputs) and again when it runs.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from comfy_api.latest import io

from ..mvic.training.preflight import CAPTION_CHOICES
from ..mvic.training.presets import PRESET_CHOICES
from .comfy_io import (
    Progress,
    category,
    confined_model_path,
    confined_output_path,
    free_comfy_memory,
    images_to_tensor,
    interrupt_requested,
    local_settings,
    loras_folder,
    model_choices,
    model_path,
    output_directory,
)

NONE = "(use path input)"
DEFAULT_TRAINER = "(default)"  # mvic.training.environment.DEFAULT_TRAINER, without importing it at start-up
DEFAULT_DATASET = "iclora_dataset"
MODEL_WIDGETS = (
    ("flux_path", "diffusion_models"),
    ("clip_l_path", "text_encoders"),
    ("t5xxl_path", "text_encoders"),
    ("ae_path", "vae"),
)


def _files(folder: str) -> list[str]:
    return [NONE, *model_choices(folder)]


def _trainer_choices() -> list[str]:
    """The dropdown: '(default)' and every checkout configured on this machine (a broken settings
    file must not break ComfyUI's node list: the error comes when the node runs)."""
    try:
        return [DEFAULT_TRAINER, *sorted(local_settings().trainers)]
    except Exception:  # noqa: BLE001 - define_schema must never raise (ComfyUI would drop the node)
        return [DEFAULT_TRAINER]


def dataset_folder(text: str | None, settings) -> Path:
    """dataset_dir: relative to ComfyUI's output folder; absolute only inside it or an allowed folder."""
    from ..mvic.paths import confined_input

    return confined_input(
        text.strip() or DEFAULT_DATASET, output_directory(), "LoRATrainer.dataset_dir", settings.readable_folders()
    )


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


# A declarative table, kept compact: one argument a line would take it past 60 lines.
# fmt: off
def _trainer_inputs() -> list:
    in_folder = "empty: the dropdown; else a file inside ComfyUI's {} folders"
    text = _files("text_encoders")
    choose = "or give {} (a path) instead"
    return [
        io.String.Input("dataset_dir", default="", tooltip="connect SaveICLoRADataset's dataset_dir; "
                                                           "relative paths start in output/"),
        io.Combo.Input("flux_model", options=_files("diffusion_models"), default=NONE,
                       tooltip=f"FLUX-dev from ComfyUI's diffusion_models folders, {choose.format('flux_path')}"),
        io.Combo.Input("clip_l", options=text, default=NONE,
                       tooltip=f"CLIP-L from the text_encoders folders, {choose.format('clip_l_path')}"),
        io.Combo.Input("t5xxl", options=text, default=NONE,
                       tooltip=f"T5-XXL from the text_encoders folders, {choose.format('t5xxl_path')}"),
        io.Combo.Input("ae", options=_files("vae"), default=NONE,
                       tooltip=f"the FLUX autoencoder from the vae folders, {choose.format('ae_path')}"),
        io.String.Input("lora_name", default="multiview_iclora",
                        tooltip="file name of the LoRA (in loras/<loras_subfolder>/) and of its run folder"),
        io.Int.Input("steps", default=1000, min=1, max=100000, tooltip="training steps; 500-2000 for 10-100 sets"),
        io.Int.Input("rank", default=16, min=1, max=256, tooltip="LoRA rank: 16 is plenty for IC-LoRA"),
        io.Float.Input("learning_rate", default=1e-4, min=1e-7, max=1e-2, step=1e-5, round=False,
                       tooltip="1e-4 is the usual FLUX LoRA rate"),
        io.Combo.Input("vram_preset", options=list(PRESET_CHOICES), default="auto",
                       tooltip="memory-saving settings for your GPU's size; auto picks by the GPU found"),
        io.Float.Input("alpha", default=16.0, min=0.1, max=256.0, optional=True,
                       tooltip="LoRA alpha; = rank keeps the learning rate's scale"),
        io.Int.Input("seed", default=42, min=0, max=2**31 - 1, optional=True, control_after_generate=True, tooltip=(
            "training seed; keep the control below at 'fixed' (as the shipped workflows do): any other "
            "value changes the seed after each run, so the LoRA trains again on every queue")),
        io.Int.Input("save_every_n_steps", default=250, min=0, max=100000, optional=True,
                     tooltip="0 = only at the end"),
        io.Int.Input("sample_every_n_steps", default=0, min=0, max=100000, optional=True,
                     tooltip="previews from held-out captions; 0 = none"),
        io.String.Input("loras_subfolder", default="mvic", optional=True,
                        tooltip="folder inside ComfyUI's loras folder the LoRA is written to"),
        io.String.Input("extra_args", default="", multiline=True, optional=True, tooltip=(
            "more training options (optimizer, scheduler, noise, timestep sampling...); "
            "options naming files, outputs or services are refused")),
        io.Combo.Input("sd_scripts_dir", options=_trainer_choices(), default=DEFAULT_TRAINER, optional=True, tooltip=(
            "which sd-scripts checkout runs: one configured on this machine (python -m mvic setup-trainer); "
            "(default): SD_SCRIPTS_DIR or the settings' default")),
        io.String.Input("gpu_ids", default="", optional=True, tooltip="e.g. 0,1 for two GPUs; empty = default"),
        *[io.String.Input(name, default="", optional=True, tooltip=in_folder.format(kind))
          for name, kind in MODEL_WIDGETS],
        io.Combo.Input("compile", options=["auto", "on", "off"], default="auto", optional=True,
                       tooltip="torch.compile: auto = only when the steps repay the compile time (80 GB preset)"),
        io.Combo.Input("fp8_matmul", options=["auto", "on", "off"], default="auto", optional=True, tooltip=(
            "FP8 products for the frozen FLUX weights (RTX 40xx, H100 and newer); auto = where measured faster")),
        io.Combo.Input("caption_problems", options=list(CAPTION_CHOICES), default="refuse", optional=True, tooltip=(
            "images without captions, or captions whose markers don't match the layout: "
            "refuse to train (listing them), or warn and train")),
        io.Int.Input("preview_steps", default=20, min=1, max=150, optional=True,
                     tooltip="denoising steps of each preview (sample_every_n_steps); fewer draws them faster"),
    ]
# fmt: on


class LoRATrainer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MVIC_LoRATrainer",
            display_name="IC-LoRA Trainer (sd-scripts)",
            category=category("train"),
            description=(
                "Trains a FLUX IC-LoRA on a SaveICLoRADataset folder with kohya sd-scripts "
                "(subprocess, its own Python)."
            ),
            inputs=_trainer_inputs(),
            outputs=[
                io.String.Output(display_name="lora_path"),
                io.Image.Output(display_name="loss_curve"),
                io.String.Output(display_name="run_dir"),
                io.Image.Output(display_name="consistency_curve"),
                io.String.Output(display_name="best_checkpoint"),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(
        cls,
        sd_scripts_dir=None,
        extra_args=None,
        dataset_dir=None,
        flux_path=None,
        clip_l_path=None,
        t5xxl_path=None,
        ae_path=None,
    ):
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
    def fingerprint_inputs(cls, dataset_dir=None, **settings):
        """Re-train when the dataset (images, captions) or any setting changes. ComfyUI passes
        linked inputs as None here: then the upstream saver's own signature covers the data.
        Never raises: an unreadable dataset makes the node run, and execute() says what is wrong."""
        try:
            return _signature(dataset_dir, settings)
        except Exception:  # noqa: BLE001 - e.g. a dangling link or a refused path: run, and report there
            return float("nan")  # never equal to itself: the node runs

    # A declarative table, kept compact: one argument a line would take it past 60 lines.
    # fmt: off
    @classmethod
    def execute(cls, dataset_dir, flux_model, clip_l, t5xxl, ae, lora_name, steps, rank, learning_rate, vram_preset,
                alpha=16.0, seed=42, save_every_n_steps=250, sample_every_n_steps=0, loras_subfolder="mvic",
                extra_args="", sd_scripts_dir=DEFAULT_TRAINER, gpu_ids="", flux_path="", clip_l_path="",
                t5xxl_path="", ae_path="", compile="auto", fp8_matmul="auto",
                caption_problems="refuse", preview_steps=20) -> io.NodeOutput:
        from ..mvic.files import safe_name
        from ..mvic.training.environment import resolve_trainer

        settings = local_settings()
        paths = {"flux_path": flux_path, "clip_l_path": clip_l_path, "t5xxl_path": t5xxl_path, "ae_path": ae_path}
        check_untrusted_widgets(settings, sd_scripts_dir, extra_args, dataset_dir, paths)  # first, before anything else
        name = safe_name(lora_name, "iclora")
        training = _training_settings(
            settings, dataset_dir, (flux_model, clip_l, t5xxl, ae), paths, name, steps=steps, rank=rank, alpha=alpha,
            learning_rate=learning_rate, seed=seed, save_every_n_steps=save_every_n_steps,
            sample_every_n_steps=sample_every_n_steps, sample_steps=preview_steps, extra_args=extra_args,
            gpu_ids=gpu_ids, compile=compile, fp8_matmul=fp8_matmul,
        )
        environment = resolve_trainer(sd_scripts_dir, settings)
        free_comfy_memory()
        loras = loras_folder() / safe_name(loras_subfolder, "mvic")
        hidden = cls.hidden  # set by ComfyUI's executor; None when the node is called directly
        started_by = {"started_by": "ComfyUI", "prompt": hidden.prompt if hidden else None,
                      "workflow": ((hidden.extra_pnginfo if hidden else None) or {}).get("workflow")}
        return _train(training, environment, loras, name, vram_preset, caption_problems, started_by)
    # fmt: on


def _training_settings(settings, dataset_dir, choices, paths, name, gpu_ids, **options):
    """The run's TrainingSettings: model files from the dropdowns or the path widgets, confined folders."""
    from ..mvic.flux_files import FluxModelFiles
    from ..mvic.training.arguments import TrainingSettings
    from ..mvic.training.multi_gpu import parse_gpu_ids

    models = FluxModelFiles(
        *(_model_file(choice, paths[widget], kind, widget) for choice, (widget, kind) in zip(choices, MODEL_WIDGETS))
    )
    return TrainingSettings(
        dataset_dir=dataset_folder(dataset_dir, settings),
        models=models,
        output_name=name,
        run_dir=confined_output_path(f"mvic_runs/{name}", "LoRATrainer.lora_name"),
        gpu_ids=parse_gpu_ids(gpu_ids),
        **options,
    )


def _train(training, environment, loras, name, vram_preset, caption_problems, started_by) -> io.NodeOutput:
    """sd-scripts with progress (and scored previews) shown in the node; the outputs and the node's text."""
    from ..mvic.training.loss_curve import loss_curve_image
    from ..mvic.training.previews import watcher_for
    from ..mvic.training.trainer import TrainingCallbacks, train_lora

    steps = training.steps
    progress = Progress(steps)
    watcher = watcher_for(training, on_preview=lambda image, record: progress.show(record.step, steps, image))

    def on_progress(p):
        progress(p.step, p.total)
        progress.text(f"step {p.step}/{p.total}" + (f", loss {p.loss:.6g}" if p.loss is not None else ""))
        watcher.poll()  # sd-scripts' new previews: scored, shown live

    def on_phase(phase):
        progress.text(phase.text())
        if phase.total:
            progress(phase.done, phase.total)

    callbacks = TrainingCallbacks(on_progress=on_progress, should_stop=interrupt_requested, on_phase=on_phase)
    result = train_lora(
        training,
        environment,
        loras,
        name,
        vram_preset,
        callbacks,
        caption_problems=caption_problems,
        started_by=started_by,
    )
    curve = images_to_tensor([loss_curve_image(result.losses)])
    previews = watcher.finish(name)
    resumed = f", resumed at step {result.resumed_from_step}" if result.resumed_from_step else ""
    text = f"LoRA: {result.lora_path} (preset {result.preset.name}{resumed})"
    if result.warnings:
        text += f"\ntrained anyway with {len(result.warnings)} caption problem(s):\n" + "\n".join(result.warnings)
    return io.NodeOutput(
        str(result.lora_path),
        curve,
        str(result.run_dir),
        images_to_tensor([previews.curve]),
        str(previews.best_checkpoint or ""),
        ui={"text": [text, previews.text]},
    )


def _model_file(choice: str, path: str, kind: str, widget: str) -> Path:
    what = widget[: -len("_path")]
    if path.strip():
        return confined_model_path(path, kind, f"LoRATrainer.{widget}")
    if choice != NONE:
        return Path(model_path(kind, choice))
    raise ValueError(
        f"LoRATrainer: choose the {what} file (dropdown) or give {widget} (a file in ComfyUI's {kind} folders)"
    )


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


NODES = [LoRATrainer]
