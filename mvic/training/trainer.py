"""Train an IC-LoRA end to end: check everything, launch sd-scripts, follow it, finish the file.

    check dataset + model files + environment -> pick VRAM preset -> drop stale caches
    -> resume from the newest state -> launch (own process group) -> progress / interrupt
    -> success = exit 0 AND the final .safetensors exists -> metadata -> atomic copy to loras/
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..export.manifest import read_manifest
from ..sources.common import safe_name
from .arguments import TrainingSettings, launch_command, parse_extra_args, sample_prompts_text, training_arguments
from .compile import plan_compile
from .environment import TOKENIZERS_DIR, TRAINERS_DIR, TrainerEnvironment, TrainerEnvironmentError, check_environment, child_env
from .fp8 import check_fp8_choice, plan_fp8
from .lora_file import write_with_metadata
from .model_files import check_model_files
from .multi_gpu import check_gpu_selection, check_multi_gpu
from .presets import VramPreset, next_lower, resolve_preset
from .process import ChildResult, run_child
from .progress import StepProgress
from .run_state import begin_attempt, dataset_key, invalidate_stale_caches, newest_state, record_cache_state


class TrainingError(RuntimeError):
    pass


@dataclass
class TrainingResult:
    lora_path: Path
    run_dir: Path
    preset: VramPreset
    losses: list[tuple[int, float]] = field(default_factory=list)
    resumed_from_step: int = 0
    deleted_caches: list[Path] = field(default_factory=list)


@dataclass
class TrainingCallbacks:
    on_progress: Callable[[StepProgress], None] | None = None
    should_stop: Callable[[], bool] | None = None
    log: Callable[[str], None] = print


def dataset_metadata(dataset_dir: Path) -> dict[str, str]:
    """What the sampler needs to configure itself, from the dataset manifest."""
    records = list(read_manifest(dataset_dir).values())
    if not records:
        raise TrainingError(f"{dataset_dir} has no metadata.jsonl records: export the dataset with SaveICLoRADataset first")
    first = records[0]
    caption = (dataset_dir / first.caption_file).read_text(encoding="utf-8") if (dataset_dir / first.caption_file).is_file() else ""
    prefix = first.markers["prefix"]
    trigger = caption.split(prefix, 1)[0].strip() if prefix in caption else ""
    return {
        "mvic_layout": json.dumps({k: first.layout[k] for k in ("rows", "cols", "panel_width", "panel_height")}),
        "mvic_markers": json.dumps(first.markers),
        "mvic_trigger": trigger,
        "mvic_dataset_size": str(len(records)),
    }


def held_out_prompts(dataset_dir: Path, count: int = 2) -> list[str]:
    """Preview prompts: captions of the last composites (stable choice, no randomness)."""
    records = list(read_manifest(dataset_dir).values())[-count:]
    return [(dataset_dir / r.caption_file).read_text(encoding="utf-8").strip() for r in records if (dataset_dir / r.caption_file).is_file()]


def validate_extra_args(environment: TrainerEnvironment, args: list[str]) -> None:
    """Parse the complete argument list with sd-scripts' own parser before launching."""
    import subprocess

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as handle:
        json.dump(args, handle)
    try:
        out = subprocess.run(
            [environment.python, str(TRAINERS_DIR / "validate_args.py"), str(environment.checkout), handle.name],
            capture_output=True, text=True, timeout=300, env=child_env(),
        )
    finally:
        Path(handle.name).unlink(missing_ok=True)
    if "MVIC_ARGS ok" not in out.stdout:
        error = [l for l in out.stderr.splitlines() if "error:" in l] or out.stderr.strip().splitlines()[-3:]
        raise TrainingError(f"sd-scripts rejects the extra arguments: {' '.join(error)}")


def train_lora(
    settings: TrainingSettings,
    environment: TrainerEnvironment,
    loras_dir: Path,
    lora_name: str,
    preset_choice: str = "auto",
    callbacks: TrainingCallbacks | None = None,
) -> TrainingResult:
    callbacks = callbacks or TrainingCallbacks()
    dataset_dir = Path(settings.dataset_dir)
    if not (dataset_dir / "dataset.toml").is_file():
        raise TrainingError(f"{dataset_dir}: no dataset.toml; connect SaveICLoRADataset's dataset_dir (or give a folder it wrote)")
    metadata = dataset_metadata(dataset_dir)
    check_model_files(settings.models)
    report = check_environment(environment, load_parser=False)
    if not report.ok:
        raise TrainerEnvironmentError("the sd-scripts environment is not ready:\n" + report.text())
    gpus = check_gpu_selection(settings.gpu_ids, report.gpus)
    preset = resolve_preset(preset_choice, min(g["total_gib"] for g in gpus) if gpus else None)
    check_multi_gpu(settings.gpu_ids, preset, parse_extra_args(settings.extra_args))
    check_fp8_choice(settings.fp8_matmul, gpus)
    callbacks.log(f"[mvic] preset {preset.name}" + (f" for {gpus[0]['name']} ({gpus[0]['total_gib']} GiB)" if gpus else " (no GPU)"))
    if preset.needs_bitsandbytes and not report.packages.get("bitsandbytes"):
        raise TrainerEnvironmentError(
            f"the '{preset.name}' preset uses the {preset.optimizer} optimizer, which needs bitsandbytes: "
            f"`pip install bitsandbytes` into {environment.python}, or add --optimizer_type Adafactor to extra_args"
        )

    settings.run_dir.mkdir(parents=True, exist_ok=True)
    if settings.tokenizer_cache_dir is None:
        settings = replace(settings, tokenizer_cache_dir=TOKENIZERS_DIR)
    if settings.sample_every_n_steps and not settings.sample_prompts:
        settings = replace(settings, sample_prompts=held_out_prompts(dataset_dir))
    if settings.sample_prompts:
        layout = json.loads(metadata["mvic_layout"])
        size = (layout["cols"] * layout["panel_width"], layout["rows"] * layout["panel_height"])
        settings.prompts_file.write_text(sample_prompts_text(settings.sample_prompts, *size), encoding="utf-8")
    deleted = invalidate_stale_caches(dataset_dir)
    if deleted:
        callbacks.log(f"[mvic] deleted {len(deleted)} stale cache file(s): the images or captions changed")
    outputs = settings.run_dir / "output"
    config_key = _config_key(settings, preset)
    finished = {"steps": settings.steps, "config": config_key, "data": dataset_key(dataset_dir)}
    state = newest_state(outputs, settings.output_name, config_key)
    done = _finished_lora(outputs, settings.output_name, finished)
    resumed = 0
    if done is not None:
        callbacks.log(f"[mvic] {done} is already trained with these settings and data")
        losses = []
    else:
        resumed = state.step if state and state.step < settings.steps else 0
        if resumed:
            settings = replace(settings, resume_from=state.folder)
            callbacks.log(f"[mvic] resuming from {state.folder.parent.name}/{state.folder.name} (step {resumed})")
        settings = replace(settings, attempt=begin_attempt(outputs, resumed, config_key))
        extra = parse_extra_args(settings.extra_args)
        compiling = plan_compile(settings.compile, preset, settings.steps - resumed, extra)
        callbacks.log(f"[mvic] torch.compile {'on' if compiling.enabled else 'off'}: {compiling.reason}")
        fp8 = plan_fp8(settings.fp8_matmul, preset, gpus, compiling.enabled)
        callbacks.log(f"[mvic] fp8 matmul {'on' if fp8.matmul else 'off'}: {fp8.reason}")
        args = training_arguments(settings, preset)
        if parse_extra_args(settings.extra_args):
            validate_extra_args(environment, args)
        command = launch_command(environment.python, environment.checkout, TRAINERS_DIR / "launch_sd_scripts.py", os.getpid(), args,
                                 settings.gpu_ids, compiling.launcher_args(extra) + fp8.launcher_args())

        def on_progress(p: StepProgress) -> None:
            if callbacks.on_progress:  # report real steps, not the resumed run's own count
                callbacks.on_progress(StepProgress(resumed + p.step, settings.steps, p.loss, p.seconds_per_step))

        env = child_env({**_gpu_env(settings.gpu_ids), **compiling.child_env()})
        result = run_child(command, settings.run_dir / "train.log", env, environment.checkout, on_progress, callbacks.should_stop)
        _raise_for_failure(result, settings, preset)
        if compiling.enabled:
            compiling.marker.parent.mkdir(parents=True, exist_ok=True)
            compiling.marker.touch()
        record_cache_state(dataset_dir)
        losses = [(resumed + p.step, p.loss) for p in result.progress if p.loss is not None]
        _write_json(settings.output_dir / "mvic_finished.json", finished)
        done = settings.final_lora
    _append_losses(settings.run_dir, losses)
    metadata.update({"mvic_base_model": Path(settings.models.flux).name, "mvic_rank": str(settings.rank), "mvic_steps": str(settings.steps), "mvic_preset": preset.name})
    target = Path(loras_dir) / f"{safe_name(lora_name, 'iclora')}.safetensors"
    write_with_metadata(done, target, metadata)
    return TrainingResult(lora_path=target, run_dir=settings.run_dir, preset=preset, losses=_read_losses(settings.run_dir),
                          resumed_from_step=resumed, deleted_caches=deleted)


def _config_key(settings: TrainingSettings, preset: VramPreset) -> str:
    """Everything a saved state depends on, except the step count."""
    m = settings.models
    parts = [str(m.flux), str(m.clip_l), str(m.t5xxl), str(m.ae), settings.rank, settings.alpha, settings.learning_rate,
             settings.seed, settings.timestep_sampling, settings.extra_args, preset.name]
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
        hint = f"choose the '{lower.name}' VRAM preset" if lower else "lower the resolution or close other programs using the GPU"
        where = ""
        if len(settings.gpu_ids) > 1:
            where = f" on GPUs {','.join(map(str, settings.gpu_ids))} (each holds the whole model)"
            hint += " on one GPU" if lower and lower.blocks_to_swap else ""
        raise TrainingError(f"CUDA ran out of memory with the '{preset.name}' preset{where}: {hint}. Log: {result.log_path}")
    if result.no_data:
        raise TrainingError(f"sd-scripts found no training images (\"No data found\") in {settings.dataset_dir}: check the dataset folder. Log: {result.log_path}")
    if result.returncode != 0:
        raise TrainingError(f"sd-scripts exited with code {result.returncode}. Last lines of {result.log_path}:\n{result.log_tail()}")
    if not settings.final_lora.is_file():
        raise TrainingError(f"sd-scripts exited cleanly but wrote no {settings.final_lora.name}. Last lines of {result.log_path}:\n{result.log_tail()}")


def _append_losses(run_dir: Path, losses: list[tuple[int, float]]) -> None:
    if losses:
        with open(run_dir / "losses.jsonl", "a", encoding="utf-8") as handle:
            for step, loss in losses:
                handle.write(json.dumps({"step": step, "loss": loss}) + "\n")


def _read_losses(run_dir: Path) -> list[tuple[int, float]]:
    path = run_dir / "losses.jsonl"
    if not path.is_file():
        return []
    by_step = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        by_step[record["step"]] = record["loss"]  # a resumed run overwrites repeated steps
    return sorted(by_step.items())
