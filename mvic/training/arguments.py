"""sd-scripts arguments for a FLUX IC-LoRA run: FLUX-correct defaults, a VRAM preset,
and the user's extra arguments last (so they win)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..flux_files import FluxModelFiles
from .presets import VramPreset

TRAIN_SCRIPT = "flux_train_network.py"


@dataclass
class TrainingSettings:
    dataset_dir: Path  # a SaveICLoRADataset folder (images/ + metadata.jsonl); only read
    models: FluxModelFiles
    run_dir: Path  # our run folder: log, state, samples, prompts
    output_name: str
    steps: int = 1000
    rank: int = 16
    alpha: float = 16.0
    learning_rate: float = 1e-4
    seed: int = 42
    save_every_n_steps: int = 0  # 0: only at the end (state is saved then too)
    sample_every_n_steps: int = 0  # 0: no preview samples
    sample_prompts: list[str] = field(default_factory=list)
    sample_steps: int = 20  # denoising steps per preview
    timestep_sampling: str = "shift"  # or "flux_shift"
    extra_args: str = ""
    resume_from: Path | None = None
    tokenizer_cache_dir: Path | None = None
    gpu_ids: tuple[int, ...] = ()  # >1: accelerate launch --multi_gpu
    attempt: int = 1  # each launch writes into its own folder (see run_state.py)
    compile: str = "auto"  # torch.compile: "auto" (when the run repays it, see compile.py), "on", "off"
    fp8_matmul: str = "auto"  # FP8 products for the frozen FLUX linears: "auto" (see fp8.py), "on", "off"

    @property
    def output_dir(self) -> Path:
        return self.run_dir / "output" / f"attempt{self.attempt}"

    @property
    def final_lora(self) -> Path:
        return self.output_dir / f"{self.output_name}.safetensors"

    @property
    def prompts_file(self) -> Path:
        return self.run_dir / "sample_prompts.txt"

    @property
    def run_dataset_dir(self) -> Path:
        """What sd-scripts trains on: links to the dataset's images, its checked captions, the caches."""
        return self.run_dir / "dataset"

    @property
    def dataset_config(self) -> Path:
        """The run's own sd-scripts dataset config (never the dataset folder's dataset.toml)."""
        return self.run_dir / "dataset.toml"


def sample_prompts_text(prompts: list[str], width: int, height: int, steps: int = 20, seed: int = 42) -> str:
    """sd-scripts' prompt file: one prompt per line with --w/--h/--s/--d/--g/--n options.

    The negative (--n) is the prompt itself: previews are sampled at cfg 1 (FLUX-dev is guidance-distilled),
    so sd-scripts never uses it, but it encodes every distinct negative ahead of training, by default "",
    one T5-XXL pass more (~13 s on a 2-core CPU); the prompt's own encoding is already there."""
    if steps < 1:
        raise ValueError(f"preview steps (preview_steps / --sample-steps) is {steps}: give 1 or more (20 is usual)")
    lines = []
    for prompt in prompts:
        flat = " ".join(prompt.split()).replace(" --", " -\u2009-")  # never let a caption inject options
        lines.append(f"{flat} --w {width} --h {height} --s {steps} --d {seed} --g 3.5 --n {flat}")
    return "\n".join(lines) + ("\n" if lines else "")


# A declarative table, kept compact: one argument a line would take it past 60 lines.
# fmt: off
def training_arguments(settings: TrainingSettings, preset: VramPreset, compile_args: list[str] = ()) -> list[str]:
    m = settings.models
    args = [
        "--pretrained_model_name_or_path", str(m.flux),
        "--clip_l", str(m.clip_l),
        "--t5xxl", str(m.t5xxl),
        "--ae", str(m.ae),
        "--dataset_config", str(settings.dataset_config),
        "--output_dir", str(settings.output_dir),
        "--output_name", settings.output_name,
        "--save_model_as", "safetensors",
        "--network_module", "networks.lora_flux",
        "--network_dim", str(settings.rank),
        "--network_alpha", f"{settings.alpha:g}",
        "--network_train_unet_only",
        "--learning_rate", f"{settings.learning_rate:g}",
        "--max_train_steps", str(settings.steps),
        "--seed", str(settings.seed),
        "--sdpa",
        "--cache_latents_to_disk",
        "--cache_text_encoder_outputs",
        "--cache_text_encoder_outputs_to_disk",
        "--timestep_sampling", settings.timestep_sampling,
        "--model_prediction_type", "raw",
        "--guidance_scale", "1.0",
        "--max_data_loader_n_workers", "0",  # latents are cached: workers only cost start-up time
        "--save_state",
        "--no_metadata",  # we write our own metadata; the launcher then also skips hashing the 24 GB base model
    ]
    if settings.timestep_sampling == "shift":
        args += ["--discrete_flow_shift", "3.1582"]
    if settings.save_every_n_steps:
        args += ["--save_every_n_steps", str(settings.save_every_n_steps)]
    if settings.sample_prompts and settings.sample_every_n_steps:
        args += ["--sample_prompts", str(settings.prompts_file)]
        args += ["--sample_every_n_steps", str(settings.sample_every_n_steps)]
    if settings.tokenizer_cache_dir:
        args += ["--tokenizer_cache_dir", str(settings.tokenizer_cache_dir)]
    if settings.resume_from:
        # Without --skip_until_initial_step sd-scripts trains max_train_steps *more* steps.
        args += ["--resume", str(settings.resume_from), "--skip_until_initial_step"]
    args += preset.arguments()
    args += list(compile_args)
    args += parse_extra_args(settings.extra_args)
    return args
# fmt: on


def parse_extra_args(text: str) -> list[str]:
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise ValueError(f"extra sd-scripts arguments {text!r}: {exc}; quote values that contain spaces") from None


def launch_command(
    python: str,
    checkout: Path,
    launcher: Path,
    parent_pid: int,
    args: list[str],
    gpu_ids: tuple[int, ...] = (),
    report_to: Path | None = None,
    launcher_args: list[str] = (),
) -> list[str]:
    """Our launcher (trainers/launch_sd_scripts.py) runs the training script in-process, under accelerate
    when several GPUs are selected; `report_to`: the log its watchdog reports into; `launcher_args`: its own
    options (e.g. --fp8-matmul)."""
    script = str(Path(checkout) / TRAIN_SCRIPT)
    head = [python, str(launcher), "--watch-parent", str(parent_pid)]
    if report_to is not None:
        head += ["--report-to", str(report_to)]
    if len(gpu_ids) > 1:
        head += ["--accelerate", "--num-processes", str(len(gpu_ids))]
    return head + list(launcher_args) + ["--", script, *args]
