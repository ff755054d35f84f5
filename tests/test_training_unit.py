"""Trainer pieces that need no sd-scripts: presets, arguments, progress parsing, caches,
model-file checks, LoRA metadata, environment errors."""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from packload import ROOT, mvic_module

presets = mvic_module("training.presets")
arguments = mvic_module("training.arguments")
progress = mvic_module("training.progress")
model_files = mvic_module("training.model_files")
lora_file = mvic_module("lora_file")
run_state = mvic_module("training.run_state")
environment = mvic_module("training.environment")
trainer = mvic_module("training.trainer")
compiling = mvic_module("training.compile")

FIXTURES = ROOT / "tests" / "fixtures"


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], metadata=None, extra_header=None) -> Path:
    """A real safetensors file with zero-filled tensors (dtype, shape)."""
    sizes = {"F16": 2, "BF16": 2, "F32": 4, "F8_E4M3": 1}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        nbytes = int(np.prod(shape)) * sizes[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = metadata
    header.update(extra_header or {})
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + bytes(offset))
    return path


@pytest.mark.parametrize(
    "gib, name",
    [(79.6, "80"), (139.8, "80"), (47.5, "48"), (44.0, "48"), (23.6, "24"), (15.7, "16"), (11.6, "12"), (7.6, "8")],
)
def test_preset_from_reported_gib(gib, name):
    assert presets.preset_for_gib(gib).name == name


def test_preset_resolution_and_next_lower():
    assert presets.resolve_preset("auto", None).name == "cpu"
    assert presets.resolve_preset("24", 80.0).name == "24"
    assert presets.next_lower(presets.PRESETS["24"]).name == "16"
    assert presets.next_lower(presets.PRESETS["8"]) is None
    with pytest.raises(ValueError, match="choose one of"):
        presets.resolve_preset("96", None)


def settings(tmp_path, **kw):
    models = arguments.FluxModelFiles(
        tmp_path / "f.safetensors", tmp_path / "c.safetensors", tmp_path / "t.safetensors", tmp_path / "a.safetensors"
    )
    return arguments.TrainingSettings(
        dataset_dir=tmp_path / "ds", models=models, run_dir=tmp_path / "run", output_name="lora", **kw
    )


@pytest.mark.parametrize("name", list(presets.PRESETS) + ["cpu"])
def test_arguments_for_every_preset(tmp_path, name):
    preset = presets.CPU_PRESET if name == "cpu" else presets.PRESETS[name]
    args = arguments.training_arguments(
        settings(tmp_path, steps=300, sample_every_n_steps=50, sample_prompts=["x"]), preset
    )
    joined = " ".join(args)
    for expected in (
        "--network_module networks.lora_flux",
        "--network_dim 16",
        "--network_alpha 16",
        "--network_train_unet_only",
        "--guidance_scale 1.0",
        "--timestep_sampling shift",
        "--discrete_flow_shift 3.1582",
        "--model_prediction_type raw",
        "--cache_latents_to_disk",
        "--cache_text_encoder_outputs_to_disk",
        "--save_state",
        "--max_train_steps 300",
        f"--dataset_config {tmp_path / 'run' / 'dataset.toml'}",
        "--sample_every_n_steps 50",
    ):
        assert expected in joined, expected
    assert ("--fp8_base" in args) == preset.fp8_base
    assert ("--gradient_checkpointing" in args) == preset.gradient_checkpointing
    assert ("--blocks_to_swap" in args) == bool(preset.blocks_to_swap)
    assert args[args.index("--optimizer_type") + 1] == preset.optimizer
    assert args[args.index("--mixed_precision") + 1] == "bf16"


@pytest.mark.parametrize(
    "choice, preset, steps, warm, expected",
    [
        (
            "auto",
            "80",
            199,
            False,
            False,
        ),  # cold cache: block-wise compile 30-48 s vs ~0.25 s saved a step (H200) -> from 200 steps
        ("auto", "80", 200, False, True),
        ("auto", "80", 49, True, False),  # warm cache: 14 s -> from 50 steps
        ("auto", "80", 50, True, True),
        ("auto", "24", 5000, True, False),  # not measured with compile: eager unless asked
        ("on", "24", 10, False, True),
        ("off", "80", 5000, True, False),
    ],
)
def test_compile_only_when_the_run_repays_it(tmp_path, choice, preset, steps, warm, expected):
    if warm:
        (tmp_path / f"mvic-compiled-preset-{preset}").touch()
    plan = compiling.plan_compile(choice, presets.PRESETS[preset], steps, [], cache_dir=tmp_path)
    assert plan.enabled is expected, plan.reason
    # our launcher compiles block by block (--compile-blocks), with our own persistent inductor cache
    assert plan.launcher_args([]) == (["--compile-blocks"] if expected else [])
    assert plan.child_env() == ({"TORCHINDUCTOR_CACHE_DIR": str(tmp_path)} if expected else {})


def test_compile_in_extra_args_is_not_doubled_and_bad_choice_names_the_fix(tmp_path):
    plan = compiling.plan_compile("off", presets.PRESETS["80"], 10, ["--torch_compile"], cache_dir=tmp_path)
    assert plan.enabled and plan.launcher_args(["--torch_compile"]) == []  # sd-scripts' whole-model compile, as asked
    with pytest.raises(ValueError, match="auto, on, off"):
        compiling.plan_compile("yes", presets.PRESETS["80"], 10, [], cache_dir=tmp_path)


def test_extra_args_come_last_and_flux_shift_drops_the_fixed_shift(tmp_path):
    args = arguments.training_arguments(
        settings(
            tmp_path,
            timestep_sampling="flux_shift",
            extra_args='--network_args "train_blocks=single" --lr_warmup_steps 10',
        ),
        presets.PRESETS["24"],
    )
    assert args[-4:] == ["--network_args", "train_blocks=single", "--lr_warmup_steps", "10"]
    assert "--discrete_flow_shift" not in args
    with pytest.raises(ValueError, match="quote"):
        arguments.parse_extra_args('--x "unclosed')


def test_multi_gpu_uses_accelerate(tmp_path):
    command = arguments.launch_command("py", tmp_path, tmp_path / "launch.py", 123, ["--a"], gpu_ids=(0, 1))
    assert command[:8] == [
        "py",
        str(tmp_path / "launch.py"),
        "--watch-parent",
        "123",
        "--accelerate",
        "--num-processes",
        "2",
        "--",
    ]


def test_sample_prompt_file_cannot_be_injected():
    text = arguments.sample_prompts_text(["a cat --w 9999", "[FOUR-VIEWS] a mug"], 1024, 1024)
    lines = text.splitlines()
    assert lines[1] == "[FOUR-VIEWS] a mug --w 1024 --h 1024 --s 20 --d 42 --g 3.5 --n [FOUR-VIEWS] a mug"
    assert " --w 9999" not in lines[0] and "--w 1024 --h 1024 --s 20 --d 42 --g 3.5 --n a cat" in lines[0]
    assert lines[0].count(" --w ") == 1


def test_progress_parser_on_real_sd_scripts_output():
    raw = (FIXTURES / "sdscripts_cpu_train.log").read_text(encoding="utf-8")
    lines, rest = progress.split_console(raw + "\n")
    steps = [p for p in map(progress.parse_step, lines) if p]
    assert steps[0].step == 0 and steps[-1].step == steps[-1].total == 4
    with_loss = [p for p in steps if p.loss is not None]
    assert with_loss and all(np.isfinite(p.loss) for p in with_loss)
    assert any(p.seconds_per_step and p.seconds_per_step > 1 for p in steps)  # "6.43s/it"
    assert progress.parse_step(
        "steps:  10%|█  | 5/50 [00:02<00:18,  2.50it/s, avr_loss=0.42]"
    ).seconds_per_step == pytest.approx(0.4)
    assert progress.is_out_of_memory("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB")
    assert progress.is_no_data("ERROR    No data found. Please verify arguments")


def test_model_file_checks_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(model_files.ModelFileError, match="does not exist"):
        model_files.check_model_file(tmp_path / "missing.safetensors", "flux")
    (tmp_path / "flux.gguf").write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(model_files.ModelFileError, match="GGUF.*bf16 or fp8_e4m3fn"):
        model_files.check_model_file(tmp_path / "flux.gguf", "flux")
    (tmp_path / "FLUX.1-dev").mkdir()
    with pytest.raises(model_files.ModelFileError, match="diffusers folder"):
        model_files.check_model_file(tmp_path / "FLUX.1-dev", "flux")
    scaled = write_safetensors(
        tmp_path / "t5_scaled.safetensors",
        {"encoder.block.0.layer.0.SelfAttention.q.weight": ("F8_E4M3", [4, 4]), "scaled_fp8": ("F8_E4M3", [0])},
    )
    with pytest.raises(model_files.ModelFileError, match="scaled.*t5xxl_fp16"):
        model_files.check_model_file(scaled, "t5xxl")
    aio = write_safetensors(
        tmp_path / "aio.safetensors",
        {
            "model.diffusion_model.double_blocks.0.img_attn.qkv.weight": ("BF16", [4, 4]),
            "vae.decoder.conv_in.weight": ("BF16", [1]),
        },
    )
    with pytest.raises(model_files.ModelFileError, match="all-in-one"):
        model_files.check_model_file(aio, "flux")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01")
    with pytest.raises(model_files.ModelFileError, match="truncated"):
        model_files.check_model_file(tmp_path / "junk.safetensors", "ae")
    good = write_safetensors(tmp_path / "flux.safetensors", {"double_blocks.0.img_attn.qkv.weight": ("BF16", [4, 4])})
    assert model_files.check_model_file(good, "flux") == good


def test_lora_metadata_is_added_without_touching_tensors(tmp_path):
    source = write_safetensors(
        tmp_path / "out.safetensors",
        {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": ("F32", [16, 8])},
        metadata={"ss_x": "1"},
    )
    target = lora_file.write_with_metadata(
        source, tmp_path / "loras" / "mvic" / "a.safetensors", {"mvic_layout": '{"rows": 2}', "mvic_trigger": "t"}
    )
    meta = lora_file.read_metadata(target)
    assert meta == {"ss_x": "1", "mvic_layout": '{"rows": 2}', "mvic_trigger": "t"}
    src, dst = source.read_bytes(), target.read_bytes()
    assert src[8 + struct.unpack("<Q", src[:8])[0] :] == dst[8 + struct.unpack("<Q", dst[:8])[0] :]
    assert (8 + struct.unpack("<Q", dst[:8])[0]) % 8 == 0
    with pytest.raises(ValueError, match="mvic_"):
        lora_file.write_with_metadata(source, tmp_path / "b.safetensors", {"layout": "x"})


def _dataset(tmp_path):
    datatypes, layout_mod, markers = mvic_module("datatypes"), mvic_module("layout"), mvic_module("markers")
    items = []
    for name in ("a", "b"):
        image = np.full((32, 64, 3), ord(name), np.uint8)
        panels = [datatypes.PanelSource(name, "mug", f"/nowhere/{name}{i}.jpg", i) for i in range(2)]
        items.append(
            datatypes.Composite(
                name, "mug", layout_mod.CompositeLayout(1, 2, 32, 32), markers.markers_for(1, 2), image, panels
            )
        )
    folder = tmp_path / "ds"
    mvic_module("export.dataset").save_dataset(datatypes.Composites(items), folder, trigger="mvtok")
    return folder, items


def test_stale_caches_are_deleted_when_images_or_captions_change(tmp_path):
    """The caches live in the run's own view of the dataset (run_dataset.py), next to the links."""
    folder, items = _dataset(tmp_path)
    preflight, run_dataset = mvic_module("training.preflight"), mvic_module("training.run_dataset")
    view, config = tmp_path / "run" / "dataset", tmp_path / "run" / "dataset.toml"

    def prepare():
        dataset = preflight.read_dataset(folder)
        state = dataset.state()
        return state, [p.name for p in run_dataset.prepare_run_dataset(dataset, view, config, state)]

    state, deleted = prepare()
    stems = sorted(state)
    assert deleted == [] and sorted(p.name for p in view.glob("*.png")) == [f"{s}.png" for s in stems]

    def make_caches():
        for stem in stems:
            (view / f"{stem}_0064x0032_flux.npz").write_bytes(b"latents")
            (view / f"{stem}_flux_te.npz").write_bytes(b"te")

    make_caches()
    assert len(prepare()[1]) == 4  # no record yet: provenance unknown
    make_caches()
    run_state.record_cache_state(view, preflight.read_dataset(folder).state())  # what a successful run does
    assert prepare()[1] == []
    caption = folder / "images" / f"{stems[0]}.txt"
    caption.write_text(caption.read_text() + " Edited.")
    assert prepare()[1] == [f"{stems[0]}_flux_te.npz"]
    assert (view / f"{stems[0]}.txt").read_text().endswith(" Edited.")  # the run trains on the edit
    make_caches()
    run_state.record_cache_state(view, preflight.read_dataset(folder).state())
    items[1].image[:] = 7  # b's pixels change -> its latents are stale, its caption is not
    mvic_module("export.dataset").save_dataset(mvic_module("datatypes").Composites(items), folder, trigger="mvtok")
    assert prepare()[1] == [f"{stems[1]}_0064x0032_flux.npz"]
    assert (
        not list(folder.rglob("*.npz")) and not (folder / run_state.CACHE_STATE).exists()
    )  # nothing written into the dataset


def test_dataset_metadata_for_the_sampler(tmp_path):
    folder, _ = _dataset(tmp_path)
    meta = trainer.dataset_metadata(mvic_module("training.preflight").read_dataset(folder))
    assert json.loads(meta["mvic_layout"]) == {"rows": 1, "cols": 2, "panel_width": 32, "panel_height": 32}
    assert json.loads(meta["mvic_markers"]) == {"prefix": "[TWO-VIEWS]", "panels": ["[LEFT]", "[RIGHT]"]}
    assert meta["mvic_trigger"] == "mvtok"


def test_the_lora_metadata_codec_carries_the_trigger_to_the_sampler():
    """One codec (mvic/lora_file.py) writes what the trainer knows and reads it back for the samplers."""
    info = lora_file.IcLoraInfo(layout=(1, 2, 32, 32), markers=("[TWO-VIEWS]", ("[LEFT]", "[RIGHT]")), trigger="mv tok")
    meta = lora_file.iclora_metadata(info)
    assert meta["mvic_trigger"] == "mv tok" and lora_file.iclora_info(meta, "a.safetensors") == info
    defaults = mvic_module("sampling.plan").LoraDefaults.from_metadata(meta)
    assert (defaults.trigger, defaults.markers.panels, defaults.layout.cols) == ("mv tok", ("[LEFT]", "[RIGHT]"), 2)
    unmarked = lora_file.iclora_metadata(lora_file.IcLoraInfo(layout=(1, 2, 32, 32), trigger="mv tok"))
    assert list(unmarked) == ["mvic_layout"]  # a LoRA trained without markers claims neither markers nor trigger


def test_newest_state_counts_real_steps_across_attempts(tmp_path):
    """sd-scripts restarts its counter on resume: attempt 2 (from step 2) calls its step 2 'step00000002'."""

    def save(attempt_base, name, step, complete=True):
        folder = tmp_path / f"attempt{attempt_base[0]}" / name
        folder.mkdir(parents=True)
        files = run_state.STATE_FILES if complete else ("train_state.json",)
        for file in files:
            (folder / file).write_text(
                json.dumps({"current_epoch": 1, "current_step": step}) if file == "train_state.json" else "x"
            )

    assert run_state.begin_attempt(tmp_path, 0, "cfg") == 1
    save((1, 0), "lora-step00000002-state", 2)
    assert run_state.begin_attempt(tmp_path, 2, "cfg") == 2
    save((2, 2), "lora-step00000002-state", 2)
    save((2, 2), "lora-step00000003-state", 3, complete=False)  # killed while saving
    state = run_state.newest_state(tmp_path, "lora", "cfg")
    assert state.step == 4 and state.folder.parent.name == "attempt2"
    assert run_state.newest_state(tmp_path, "lora", "other settings") is None


def test_environment_errors_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("SD_SCRIPTS_DIR", raising=False)
    monkeypatch.delenv("SD_SCRIPTS_PYTHON", raising=False)
    monkeypatch.setenv("MVIC_CONFIG", str(tmp_path / "none.json"))
    nothing = mvic_module("settings").LocalSettings(path=tmp_path / "settings.json")
    with pytest.raises(environment.TrainerEnvironmentError, match="setup-trainer"):
        environment.resolve_trainer("(default)", nothing)
    with pytest.raises(environment.TrainerEnvironmentError, match="not an sd-scripts checkout"):
        environment.find_environment(str(tmp_path), sys.executable)
    (tmp_path / "flux_train_network.py").write_text("")
    with pytest.raises(environment.TrainerEnvironmentError, match="no Python environment"):
        environment.find_environment(str(tmp_path))


def test_wrong_environment_is_reported_exactly(tmp_path):
    """A bare venv (no torch, no transformers...) as sd-scripts' Python: the probe lists each gap."""
    import subprocess

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=120)
    (tmp_path / "flux_train_network.py").write_text("")
    (tmp_path / "requirements.txt").write_text("transformers==4.54.1\ndiffusers[torch]==0.32.1\n")
    report = environment.check_environment(
        environment.TrainerEnvironment(tmp_path, str(tmp_path / "bare" / "bin" / "python"))
    )
    assert not report.ok
    text = report.text()
    for name in ("torch", "transformers", "diffusers", "accelerate", "safetensors"):
        assert f"{name} does not import" in text
    assert "networks/lora_flux.py is missing" in text


def test_transformers_5_and_pin_mismatches_are_named(tmp_path):
    """This test venv has transformers 5 and a newer diffusers (for the peft check): both reported."""
    pytest.importorskip("transformers")
    (tmp_path / "flux_train_network.py").write_text("")
    (tmp_path / "requirements.txt").write_text("transformers==4.54.1\n")
    report = environment.check_environment(environment.TrainerEnvironment(tmp_path, sys.executable))
    import transformers

    if transformers.__version__.startswith("5."):
        assert "breaks under transformers 5" in report.text()
    assert f"transformers {transformers.__version__} installed, sd-scripts pins 4.54.1" in report.text()


def test_setup_trainer_dry_run_prints_a_venv_from_the_checkouts_requirements(tmp_path):
    """`python -m mvic setup-trainer` (the real install needs internet): the plan it would run."""
    import subprocess

    (tmp_path / "flux_train_network.py").write_text("")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mvic",
            "setup-trainer",
            "--sd-scripts",
            str(tmp_path),
            "--torch",
            "torch==2.7.1",
            "--dry-run",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith(f"-m venv {tmp_path / 'venv'}")
    assert lines[2].endswith("-m pip install torch==2.7.1") and lines[3].endswith("-m pip install -r requirements.txt")
    assert not (tmp_path / "venv").exists()
    bad = subprocess.run(
        [sys.executable, "-m", "mvic", "setup-trainer", "--sd-scripts", str(tmp_path / "nope"), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "not an sd-scripts checkout" in bad.stderr


def test_preview_steps_reach_the_prompt_file_and_zero_is_refused_with_the_fix():
    text = arguments.sample_prompts_text(["a mug"], 64, 32, steps=3)
    assert text == "a mug --w 64 --h 32 --s 3 --d 42 --g 3.5 --n a mug\n"
    with pytest.raises(ValueError, match=r"preview_steps / --sample-steps\) is 0: give 1 or more"):
        arguments.sample_prompts_text(["a mug"], 64, 32, steps=0)
