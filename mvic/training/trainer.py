"""Train an IC-LoRA end to end, in three steps:

1. pre-flight: the untrusted extra_args -> the dataset as it really is (images, captions,
   markers, sizes) -> model files -> the sd-scripts environment and VRAM preset -> disk space
2. resume planning: the run's own dataset folder and config (stale caches dropped), an
   identical finished run reused, else the newest saved state resumed in a new attempt
3. launch: own process group, progress / interrupt; success = exit 0 AND the final
   .safetensors exists -> metadata -> atomic copy to loras/
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..files import TOKENIZERS_DIR, TRAINERS_DIR, atomic_write_text, safe_name
from ..flux_files import safetensors_header
from ..lora_file import LAYOUT_KEYS, IcLoraInfo, iclora_metadata, write_with_metadata
from .arguments import TrainingSettings, launch_command, sample_prompts_text, training_arguments
from .compile import plan_compile
from .environment import (
    EnvironmentReport,
    TrainerEnvironment,
    TrainerEnvironmentError,
    check_environment,
    child_env,
    verify_checkout,
)
from .errors import TrainingError
from .extra_args import check_extra_args
from .fp8 import check_fp8_choice, plan_fp8
from .model_files import check_model_files
from .multi_gpu import check_gpu_selection, check_multi_gpu
from .preflight import (
    CAPTION_CHOICES,
    TrainingDataset,
    check_captions,
    check_free_space,
    estimate_disk,
    lora_parameters,
    read_dataset,
)
from .presets import VramPreset, next_lower, resolve_preset
from .process import ChildResult, run_child
from .progress import PhaseProgress, StepProgress
from .run_dataset import prepare_run_dataset
from .run_state import begin_attempt, dataset_key, newest_state, record_cache_state

__all__ = ["TrainingError", "TrainingResult", "TrainingCallbacks", "train_lora"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    lora_path: Path
    run_dir: Path
    preset: VramPreset
    losses: list[tuple[int, float]] = field(default_factory=list)
    resumed_from_step: int = 0
    deleted_caches: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # caption problems trained anyway


@dataclass
class TrainingCallbacks:
    on_progress: Callable[[StepProgress], None] | None = None
    should_stop: Callable[[], bool] | None = None
    log: Callable[[str], None] = logger.info  # the CLI passes print
    on_phase: Callable[[PhaseProgress], None] | None = None  # model loading, latent / text-encoder caching


@dataclass
class Preflight:
    """What step 1 established."""

    dataset: TrainingDataset
    preset: VramPreset
    report: EnvironmentReport
    extra: list[str]  # the checked extra arguments
    gpus: list[dict] = field(default_factory=list)  # the GPUs the run uses (all visible when none chosen)


@dataclass
class RunPlan:
    """What step 2 decided: the settings to launch with, or an identical LoRA already trained."""

    settings: TrainingSettings
    state: dict  # the dataset's state (run_state.py)
    finished: dict  # written next to the LoRA when the launch succeeds
    done: Path | None = None
    resumed: int = 0
    deleted_caches: list[Path] = field(default_factory=list)


def train_lora(
    settings: TrainingSettings,
    environment: TrainerEnvironment,
    loras_dir: Path,
    lora_name: str,
    preset_choice: str = "auto",
    callbacks: TrainingCallbacks | None = None,
    caption_problems: str = "refuse",
    unsafe_extra_args: bool = False,
    started_by: dict | None = None,
) -> TrainingResult:
    """`caption_problems`: 'refuse' (default) or 'warn and train' (preflight.py). `unsafe_extra_args`:
    only for a local user's own command line; a workflow's extra_args are always checked. `started_by`:
    what started the run (the workflow, the command line), kept in the run folder as started_by.json."""
    callbacks = callbacks or TrainingCallbacks()
    checked = preflight(
        settings, environment, Path(loras_dir), preset_choice, callbacks, caption_problems, unsafe_extra_args
    )
    plan = plan_run(settings, checked, callbacks)
    if started_by is not None:
        keep_started_by(plan, started_by)
    losses = [] if plan.done else launch(plan, checked, environment, callbacks)
    return finish(plan, checked, Path(loras_dir), lora_name, losses)


def preflight(
    settings: TrainingSettings,
    environment: TrainerEnvironment,
    loras_dir: Path,
    preset_choice: str,
    callbacks: TrainingCallbacks,
    caption_problems: str = "refuse",
    unsafe_extra_args: bool = False,
) -> Preflight:
    """Everything that can be known before launching; nothing is written."""
    extra = check_extra_args(settings.extra_args, unsafe=unsafe_extra_args)  # untrusted input first
    if caption_problems not in CAPTION_CHOICES:
        raise ValueError(f"caption_problems {caption_problems!r}: choose one of {', '.join(CAPTION_CHOICES)}")
    dataset = read_dataset(Path(settings.dataset_dir))
    check_captions(dataset, caption_problems, callbacks.log)
    check_model_files(settings.models)
    report = check_environment(environment, load_parser=False, reuse=True)
    if not report.ok:
        raise TrainerEnvironmentError("the sd-scripts environment is not ready:\n" + report.text())
    gpus = check_gpu_selection(settings.gpu_ids, report.gpus)
    preset = resolve_preset(preset_choice, min(g["total_gib"] for g in gpus) if gpus else None)
    check_multi_gpu(settings.gpu_ids, preset, extra)
    check_fp8_choice(settings.fp8_matmul, gpus)
    card = f" for {gpus[0]['name']} ({gpus[0]['total_gib']} GiB)" if gpus else " (no GPU)"
    callbacks.log(f"[mvic] preset {preset.name}{card}")
    if preset.needs_bitsandbytes and not report.packages.get("bitsandbytes"):
        raise TrainerEnvironmentError(
            f"the '{preset.name}' preset uses the {preset.optimizer} optimizer, which needs bitsandbytes: "
            f"`pip install bitsandbytes` into {environment.python}, or add --optimizer_type Adafactor to extra_args"
        )
    check_free_space(_disk_needs(settings, dataset, preset, extra), settings.run_dir, loras_dir)
    return Preflight(dataset, preset, report, extra, gpus)


def _disk_needs(settings: TrainingSettings, dataset: TrainingDataset, preset: VramPreset, extra: list[str]):
    cached = len(list(settings.run_dataset_dir.glob("*_flux_te.npz"))) if settings.run_dataset_dir.is_dir() else 0
    tokens = int(_option(extra, "--t5xxl_max_token_length", "512"))
    optimizer = _option(extra, "--optimizer_type", preset.optimizer)
    parameters = lora_parameters(safetensors_header(Path(settings.models.flux)), settings.rank)
    return estimate_disk(
        len(dataset.images),
        cached,
        dataset.size,
        tokens,
        parameters,
        settings.steps,
        settings.save_every_n_steps,
        "8bit" in optimizer.lower(),
    )


def _option(args: list[str], name: str, default: str) -> str:
    """The last value given for `name` (sd-scripts' parser lets the last one win)."""
    value = default
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def plan_run(settings: TrainingSettings, checked: Preflight, callbacks: TrainingCallbacks) -> RunPlan:
    """Write the run's dataset view and prompts; find a finished twin or the state to resume from."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    state = checked.dataset.state()
    deleted = prepare_run_dataset(checked.dataset, settings.run_dataset_dir, settings.dataset_config, state)
    if deleted:
        callbacks.log(f"[mvic] deleted {len(deleted)} stale cache file(s): the images or captions changed")
    if settings.tokenizer_cache_dir is None:
        settings = replace(settings, tokenizer_cache_dir=TOKENIZERS_DIR)
    if settings.sample_every_n_steps and not settings.sample_prompts:
        settings = replace(settings, sample_prompts=checked.dataset.captions()[-2:])  # stable choice, no randomness
    if settings.sample_prompts:
        text = sample_prompts_text(settings.sample_prompts, *checked.dataset.size, steps=settings.sample_steps)
        settings.prompts_file.write_text(text, encoding="utf-8")
    outputs = settings.run_dir / "output"
    config_key = _config_key(settings, checked.preset)
    finished = {"steps": settings.steps, "config": config_key, "data": dataset_key(state)}
    done = _finished_lora(outputs, settings.output_name, finished)
    plan = RunPlan(settings, state, finished, done, deleted_caches=deleted)
    if plan.done is not None:
        callbacks.log(f"[mvic] {plan.done} is already trained with these settings and data")
        return plan
    saved = newest_state(outputs, settings.output_name, config_key)
    plan.resumed = saved.step if saved and saved.step < settings.steps else 0
    if plan.resumed:
        settings = replace(settings, resume_from=saved.folder)
        callbacks.log(f"[mvic] resuming from {saved.folder.parent.name}/{saved.folder.name} (step {plan.resumed})")
    plan.settings = replace(settings, attempt=begin_attempt(outputs, plan.resumed, config_key))
    return plan


def launch(
    plan: RunPlan, checked: Preflight, environment: TrainerEnvironment, callbacks: TrainingCallbacks
) -> list[tuple[int, float]]:
    """Run sd-scripts for the planned attempt; the losses of the steps it trained."""
    settings, resumed = plan.settings, plan.resumed
    compiling = plan_compile(settings.compile, checked.preset, settings.steps - resumed, checked.extra)
    callbacks.log(f"[mvic] torch.compile {'on' if compiling.enabled else 'off'}: {compiling.reason}")
    fp8 = plan_fp8(settings.fp8_matmul, checked.preset, checked.gpus, compiling.enabled)
    callbacks.log(f"[mvic] fp8 matmul {'on' if fp8.matmul else 'off'}: {fp8.reason}")
    args = training_arguments(settings, checked.preset)
    verify_checkout(environment)  # right before any of its code runs
    log = settings.run_dir / "train.log"
    command = launch_command(
        environment.python,
        environment.checkout,
        TRAINERS_DIR / "launch_sd_scripts.py",
        os.getpid(),
        args,
        settings.gpu_ids,
        log,
        compiling.launcher_args(checked.extra) + fp8.launcher_args(),
    )

    keep_losses_until(settings.run_dir, resumed)  # this attempt trains the steps after `resumed` again

    def on_progress(p: StepProgress) -> None:
        if p.loss is not None:  # one line per step, written as it comes: a killed run keeps its curve
            _append_losses(settings.run_dir, [(resumed + p.step, p.loss)])
        if callbacks.on_progress:  # report real steps, not the resumed run's own count
            callbacks.on_progress(StepProgress(resumed + p.step, settings.steps, p.loss, p.seconds_per_step))

    env = child_env({**_gpu_env(settings.gpu_ids), **compiling.child_env()})
    result = run_child(command, log, env, environment.checkout, on_progress, callbacks.should_stop, callbacks.on_phase)
    _raise_for_failure(result, settings, checked.preset)
    if compiling.enabled:
        compiling.marker.parent.mkdir(parents=True, exist_ok=True)
        compiling.marker.touch()
    record_cache_state(settings.run_dataset_dir, plan.state)
    _write_json(settings.output_dir / "mvic_finished.json", plan.finished)
    return [(resumed + step, loss) for step, loss in sorted(result.step_losses.items())]


def finish(
    plan: RunPlan, checked: Preflight, loras_dir: Path, lora_name: str, losses: list[tuple[int, float]]
) -> TrainingResult:
    settings = plan.settings
    metadata = dataset_metadata(checked.dataset)
    metadata.update(
        {
            "mvic_base_model": Path(settings.models.flux).name,
            "mvic_rank": str(settings.rank),
            "mvic_steps": str(settings.steps),
            "mvic_preset": checked.preset.name,
        }
    )
    target = loras_dir / f"{safe_name(lora_name, 'iclora')}.safetensors"
    width, height = checked.dataset.size  # sd-scripts writes its --resolution default (1024x1024) here
    write_with_metadata(
        plan.done or settings.final_lora, target, metadata, replaced={"modelspec.resolution": f"{width}x{height}"}
    )
    return TrainingResult(
        lora_path=target,
        run_dir=settings.run_dir,
        preset=checked.preset,
        losses=_read_losses(settings.run_dir),
        resumed_from_step=plan.resumed,
        deleted_caches=plan.deleted_caches,
        warnings=list(checked.dataset.problems),
    )


def dataset_metadata(dataset: TrainingDataset) -> dict[str, str]:
    """What the sampler needs to configure itself. The markers (and trigger) only when captions
    really use them: a LoRA trained without them must not claim them."""
    marked = bool(dataset.marked_captions())
    info = IcLoraInfo(
        layout=tuple(dataset.layout[key] for key in LAYOUT_KEYS),
        markers=(dataset.markers["prefix"], tuple(dataset.markers["panels"])) if marked else None,
        trigger=dataset.trigger() if marked else "",
    )
    return {**iclora_metadata(info), "mvic_dataset_size": str(len(dataset.images))}


def _config_key(settings: TrainingSettings, preset: VramPreset) -> str:
    """Everything a saved state depends on, except the step count."""
    m = settings.models
    parts = [
        str(m.flux),
        str(m.clip_l),
        str(m.t5xxl),
        str(m.ae),
        settings.rank,
        settings.alpha,
        settings.learning_rate,
        settings.seed,
        settings.timestep_sampling,
        settings.extra_args,
        preset.name,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _finished_lora(outputs: Path, output_name: str, finished: dict) -> Path | None:
    """The final LoRA of an earlier attempt with the same steps, settings and data."""
    for marker in outputs.glob("attempt*/mvic_finished.json"):
        lora = marker.parent / f"{output_name}.safetensors"
        if json.loads(marker.read_text()) == finished and lora.is_file():
            return lora
    return None


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def _gpu_env(gpu_ids: tuple[int, ...]) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in gpu_ids)} if gpu_ids else {}


def _raise_for_failure(result: ChildResult, settings: TrainingSettings, preset: VramPreset) -> None:
    if result.out_of_memory:
        lower = next_lower(preset)
        hint = (
            f"choose the '{lower.name}' VRAM preset"
            if lower
            else "lower the resolution or close other programs using the GPU"
        )
        where = ""
        if len(settings.gpu_ids) > 1:
            where = f" on GPUs {','.join(map(str, settings.gpu_ids))} (each holds the whole model)"
            hint += " on one GPU" if lower and lower.blocks_to_swap else ""
        raise TrainingError(
            f"CUDA ran out of memory with the '{preset.name}' preset{where}: {hint}. Log: {result.log_path}"
        )
    if result.args_rejected:  # its parser runs first, before anything is loaded or written
        raise TrainingError(
            f"sd-scripts rejects the arguments (check extra_args): {result.args_rejected}. Log: {result.log_path}"
        )
    if result.no_data:
        raise TrainingError(
            f'sd-scripts found no training images ("No data found") in {settings.dataset_dir}: check the dataset '
            f"folder. Log: {result.log_path}"
        )
    if result.returncode != 0:
        raise TrainingError(
            f"sd-scripts exited with code {result.returncode}. Last lines of {result.log_path}:\n{result.log_tail()}"
        )
    if not settings.final_lora.is_file():
        raise TrainingError(
            f"sd-scripts exited cleanly but wrote no {settings.final_lora.name}. Last lines of "
            f"{result.log_path}:\n{result.log_tail()}"
        )


def _append_losses(run_dir: Path, losses: list[tuple[int, float]]) -> None:
    if losses:
        with open(run_dir / "losses.jsonl", "a", encoding="utf-8") as handle:
            for step, loss in losses:
                handle.write(json.dumps({"step": step, "loss": loss}) + "\n")


def keep_losses_until(run_dir: Path, step: int) -> None:
    """Drop losses.jsonl's lines after `step` (a resumed attempt trains those steps again; a fresh one,
    step 0, starts a new curve), so that the file holds one line per step."""
    path = run_dir / "losses.jsonl"
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if kept != lines:
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def keep_started_by(plan: RunPlan, started_by: dict) -> None:
    """What started this run, in the run folder (the latest) and in the attempt's output folder."""
    text = json.dumps(started_by, indent=1, default=str)
    atomic_write_text(plan.settings.run_dir / "started_by.json", text)
    if plan.done is None:
        atomic_write_text(plan.settings.output_dir / "started_by.json", text)


def _read_losses(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "losses.jsonl"
    if not path.is_file():
        return []
    by_step = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        by_step[record["step"]] = record["loss"]  # a resumed run overwrites repeated steps
    return sorted(by_step.items())
