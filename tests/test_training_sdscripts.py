"""LoRATrainer against the real sd-scripts (SD_SCRIPTS_DIR + its Python) on tiny random FLUX models.

Each training run takes about a minute on CPU; the all-zero T5-XXL (9.5 GB in bf16, memory-mapped:
page cache, ~1.3 GB of the run's own memory) caches the text-encoder outputs, so the runs are few and
shared.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from packload import ROOT, mvic_module, node_class
from sdscripts_env import SKIP_REASON, sd_scripts_paths
from trainer_data import TINY_T5, mvic_cli

arguments = mvic_module("training.arguments")
trainer = mvic_module("training.trainer")
environment = mvic_module("training.environment")
process = mvic_module("training.process")
lora_file = mvic_module("lora_file")

pytestmark = pytest.mark.skipif(sd_scripts_paths() is None, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def sd_env():
    checkout, python = sd_scripts_paths()
    os.environ.setdefault("SD_SCRIPTS_PYTHON", python)  # the node finds it the way a user's setup does
    return environment.TrainerEnvironment(checkout.resolve(), python)


@pytest.fixture(scope="module")
def tiny_models():
    import tiny_models as tm

    return arguments.FluxModelFiles(
        flux=tm.tiny_flux(), clip_l=tm.tiny_clip_l(), t5xxl=tm.zero_t5xxl(), ae=tm.tiny_ae()
    )


def make_dataset(folder: Path, sets: int = 2) -> Path:
    """The foundation's export, 2x2 of 64 px panels (128 px composites)."""
    layout = mvic_module("layout").CompositeLayout(2, 2, 64, 64)
    loaded = mvic_module("loading").load_multiview_sets("sample", "", 4, max_sets=sets * 2)
    loaded.sets = loaded.sets[::2][:sets]  # a ball and a box: different captions
    composites = mvic_module("composites").build_composites(loaded, layout)
    mvic_module("export.dataset").save_dataset(composites, folder)
    return folder


FAST = TINY_T5  # sd-scripts' parser checks it too
# A data-loader worker process (the one that outlived ComfyUI in issue 10), kept between epochs.
WITH_WORKER = FAST + " --max_data_loader_n_workers 1 --persistent_data_loader_workers"
SECRETS = {"GEMINI_API_KEY": "sk-test-gemini", "GOOGLE_API_KEY": "sk-test-google", "OPENAI_API_KEY": "sk-test-openai"}


def settings_for(tmp: Path, models, dataset: Path, extra: str = FAST, **kw):
    return arguments.TrainingSettings(
        dataset_dir=dataset, models=models, run_dir=tmp / "run", output_name="tiny", extra_args=extra, **kw
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sd_env, tiny_models):
    """One real run through the node: 4 steps at 128 px on CPU, with the checkout registered in local
    settings the way `python -m mvic config add-trainer` does, the model files in ./models/<kind> (the
    node's model folders outside ComfyUI), and a COPY of a dataset whose original is gone (issue 10:
    the copy's dataset.toml still names the original's images)."""
    tmp = tmp_path_factory.mktemp("trained")
    original = make_dataset(tmp / "original")
    dataset = tmp / "dataset"
    shutil.copytree(original, dataset)
    shutil.rmtree(original)
    for kind, path in (
        ("diffusion_models", tiny_models.flux),
        ("text_encoders", tiny_models.clip_l),
        ("text_encoders", tiny_models.t5xxl),
        ("vae", tiny_models.ae),
    ):
        (tmp / "models" / kind).mkdir(parents=True, exist_ok=True)
        (tmp / "models" / kind / path.name).symlink_to(path)
    settings_file = tmp / "settings.json"
    registered = mvic_cli(
        "config",
        "--file",
        str(settings_file),
        "add-trainer",
        "tiny",
        "--sd-scripts",
        str(sd_env.checkout),
        "--python",
        sd_env.python,
    )
    assert registered.returncode == 0, registered.stderr
    old_cwd, old_env = os.getcwd(), dict(os.environ)
    os.chdir(tmp)  # outside ComfyUI the node puts runs in ./mvic_runs and LoRAs in ./models/loras
    os.environ.update({"MVIC_SETTINGS": str(settings_file), "SD_SCRIPTS_DIR": ""})
    started = time.monotonic()
    try:
        out = node_class("MVIC_LoRATrainer").execute(
            "dataset",
            "(use path input)",
            "(use path input)",
            "(use path input)",
            "(use path input)",
            "tiny_iclora",
            4,
            16,
            1e-4,
            "cpu",
            save_every_n_steps=2,
            extra_args=FAST,
            sd_scripts_dir="tiny",
            flux_path=tiny_models.flux.name,
            clip_l_path=tiny_models.clip_l.name,
            t5xxl_path=tiny_models.t5xxl.name,
            ae_path=tiny_models.ae.name,
        )
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)
    return {"tmp": tmp, "dataset": dataset, "out": out, "seconds": time.monotonic() - started}


def test_node_trains_end_to_end_and_the_lora_lands_with_metadata(trained):
    lora_path, curve, run_dir = trained["out"].result[:3]
    assert Path(lora_path) == trained["tmp"] / "models" / "loras" / "mvic" / "tiny_iclora.safetensors"
    header = mvic_module("flux_files").safetensors_header(Path(lora_path))
    keys = [k for k in header if k != "__metadata__"]
    assert any(k.startswith("lora_unet_double_blocks_") for k in keys) and any(
        k.startswith("lora_unet_single_blocks_") for k in keys
    )
    meta = header["__metadata__"]
    assert json.loads(meta["mvic_layout"]) == {"rows": 2, "cols": 2, "panel_width": 64, "panel_height": 64}
    assert json.loads(meta["mvic_markers"])["prefix"] == "[FOUR-VIEWS]" and meta["mvic_steps"] == "4"
    assert meta["modelspec.resolution"] == "128x128"  # the composites' size, not sd-scripts' 1024x1024
    log = (Path(run_dir) / "train.log").read_text(errors="replace")
    assert "4/4" in log and "HF_HUB_OFFLINE" not in log  # progress reached the last step
    losses = [json.loads(l) for l in (Path(run_dir) / "losses.jsonl").read_text().splitlines()]
    assert [l["step"] for l in losses] == [1, 2, 3, 4] and all(np.isfinite(l["loss"]) for l in losses)
    started = json.loads((Path(run_dir) / "started_by.json").read_text())  # called outside ComfyUI: no prompt
    assert started == {"started_by": "ComfyUI", "prompt": None, "workflow": None}
    assert tuple(curve.shape) == (1, 256, 512, 3)
    # How long it took is reported, not asserted: a timed test fails on a slow or busy machine (181 s once
    # on the 2-core AVX2 CI-like machine, 97 s in the run before); speed goals live in BENCHMARKS.md.
    print(f"\n[tiny end-to-end training: {trained['seconds']:.1f} s on this CPU]")


def test_the_copied_dataset_is_what_trained(trained):
    """Its images and captions, through the run's own dataset view and config; nothing written into it."""
    run_dir = Path(trained["out"].result[2])
    config = (run_dir / "dataset.toml").read_text()
    assert f'image_dir = "{(run_dir / "dataset").resolve()}"' in config and "original" not in config
    links = sorted((run_dir / "dataset").glob("*.png"))
    assert len(links) == 2 and all(link.resolve().parent == (trained["dataset"] / "images").resolve() for link in links)
    assert not list(trained["dataset"].rglob("*.npz"))


def test_captions_really_reach_training(trained):
    """With an all-zero T5 every T5 output is identical, so compare CLIP-L's pooled vectors."""
    caches = sorted((Path(trained["out"].result[2]) / "dataset").glob("*_flux_te.npz"))
    assert len(caches) == 2
    pooled = [np.load(c)["l_pooled"].astype(np.float32) for c in caches]
    assert not np.allclose(pooled[0], pooled[1])
    captions = [c.with_name(c.name.replace("_flux_te.npz", ".txt")).read_text() for c in caches]
    assert captions[0] != captions[1]


def test_a_dataset_without_images_is_refused_before_launch(tmp_path, sd_env, tiny_models):
    dataset = make_dataset(tmp_path / "dataset", sets=1)
    for image in (dataset / "images").glob("*.png"):
        image.unlink()
    with pytest.raises(trainer.TrainingError, match="holds no images"):
        trainer.train_lora(
            settings_for(tmp_path, tiny_models, dataset, steps=2), sd_env, tmp_path / "loras", "x", "cpu"
        )
    assert not (tmp_path / "loras").exists() and not (tmp_path / "run").exists()


def test_arguments_sd_scripts_parser_refuses_name_the_problem_and_nothing_is_trained(tmp_path, sd_env, tiny_models):
    """The allow-list passes the option (its value is not one of the parser's choices); sd-scripts' own
    parser, run first thing in the child before any model loads, refuses it, and the error says which."""
    dataset = make_dataset(tmp_path / "dataset", sets=1)
    settings = settings_for(tmp_path, tiny_models, dataset, extra=FAST + " --timestep_sampling sideways", steps=2)
    started = time.monotonic()
    with pytest.raises(trainer.TrainingError) as err:
        trainer.train_lora(settings, sd_env, tmp_path / "loras", "x", "cpu")
    message = str(err.value)
    assert "sd-scripts rejects the arguments (check extra_args)" in message
    assert "--timestep_sampling" in message and "'sideways'" in message, message
    assert not (tmp_path / "loras" / "x.safetensors").exists()
    assert time.monotonic() - started < 120  # refused at parse time, not after loading the models


def test_interrupt_ends_the_whole_process_tree_quickly(tmp_path, sd_env, tiny_models):
    dataset = make_dataset(tmp_path / "dataset", sets=1)
    requested = {}

    def should_stop():
        # Stop once sd-scripts is well under way (its log grows past start-up).
        log = tmp_path / "run" / "train.log"
        if log.exists() and log.stat().st_size > 2000:
            requested.setdefault("at", time.monotonic())
            return True
        return False

    with pytest.raises(process.TrainingInterrupted):
        trainer.train_lora(
            settings_for(tmp_path, tiny_models, dataset, steps=50),
            sd_env,
            tmp_path / "loras",
            "x",
            "cpu",
            trainer.TrainingCallbacks(should_stop=should_stop),
        )
    gone_after = time.monotonic() - requested["at"]
    assert gone_after <= 5.0, f"took {gone_after:.1f} s"
    assert _processes_mentioning(str(tmp_path / "run")) == []


PARENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path as P
    sys.path.insert(0, {tests!r})
    from packload import mvic_module
    a, t, e = mvic_module("training.arguments"), mvic_module("training.trainer"), mvic_module("training.environment")
    models = a.FluxModelFiles(P({flux!r}), P({clip!r}), P({t5!r}), P({ae!r}))
    settings = a.TrainingSettings(dataset_dir=P({dataset!r}), models=models, run_dir=P({run!r}), output_name="tiny",
                                  steps=4, save_every_n_steps=2, extra_args={extra!r})
    t.train_lora(settings, e.TrainerEnvironment(P({checkout!r}), {python!r}), P({loras!r}), "resumed", "cpu")
    """
)


def test_sigkill_of_the_parent_kills_training_and_a_rerun_resumes(tmp_path, sd_env, tiny_models):
    """ComfyUI dies mid-run (SIGKILL) while the child's output goes to its pipe: within 5 s no process
    of the run is left (sd-scripts and its data-loader worker), the log says why, the child never
    had the user's API keys; the same run name then resumes."""
    dataset = make_dataset(tmp_path / "dataset", sets=1)
    run = tmp_path / "run"
    code = PARENT.format(
        tests=str(ROOT / "tests"),
        flux=str(tiny_models.flux),
        clip=str(tiny_models.clip_l),
        t5=str(tiny_models.t5xxl),
        ae=str(tiny_models.ae),
        dataset=str(dataset),
        run=str(run),
        checkout=str(sd_env.checkout),
        python=sd_env.python,
        loras=str(tmp_path / "loras"),
        extra=WITH_WORKER,
    )
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **SECRETS})
    state = run / "output" / "attempt1" / "tiny-step00000002-state" / "scheduler.bin"
    deadline = time.monotonic() + 240
    while not state.exists() and time.monotonic() < deadline and parent.poll() is None:
        time.sleep(0.2)
    assert state.exists(), (run / "train.log").read_text(errors="replace")[-3000:]
    running = [pid for pid in _processes_mentioning(str(run)) if pid != parent.pid]  # the parent has the keys: ComfyUI
    assert len(running) >= 2, "expected sd-scripts and its data-loader worker"
    for pid in running:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.split(b"=", 1)[0].decode() in SECRETS], f"process {pid} got an API key"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    killed_at = time.monotonic()
    while _processes_mentioning(str(run)) and time.monotonic() - killed_at < 5:
        time.sleep(0.1)
    assert _processes_mentioning(str(run)) == [], "training outlived its parent by 5 s"
    assert f"[mvic] parent process {parent.pid} is gone: killed" in (run / "train.log").read_text(errors="replace")
    assert not list(run.glob("output/*/tiny.safetensors"))

    seen = []
    result = trainer.train_lora(
        settings_for(tmp_path, tiny_models, dataset, steps=4, save_every_n_steps=2, extra=WITH_WORKER),
        sd_env,
        tmp_path / "loras",
        "resumed",
        "cpu",
        trainer.TrainingCallbacks(on_progress=seen.append),
    )
    assert result.resumed_from_step == 2
    assert [p.step for p in seen if p.loss is not None][-1] == 4 and {p.total for p in seen} == {4}
    assert (
        mvic_module("training.run_state")
        .newest_state(
            run / "output",
            "tiny",
            json.loads((run / "output" / "attempt2" / "mvic_attempt.json").read_text())["config"],
        )
        .step
        == 4
    )
    assert (
        run / "output" / "attempt1" / "tiny-step00000002-state" / "model.safetensors"
    ).is_file()  # the resume point survived
    assert result.lora_path.is_file() and result.losses[-1][0] == 4
    # At most one loss line per step across the killed attempt and the resumed one (issue 14.5): none repeated.
    # The resumed attempt's steps are all there; a step of the killed attempt whose line was still in the
    # dead parent's pipe when it was SIGKILLed (step 2 here, at times) is a gap, never a repeat.
    steps = [json.loads(line)["step"] for line in (run / "losses.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and {3, 4} <= set(steps) <= {1, 2, 3, 4}


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_the_lora_applies_in_real_comfyui_with_no_unmatched_keys(trained, tiny_models):
    from comfy_harness import comfyui_paths

    paths = comfyui_paths()
    if paths is None:
        pytest.skip("real-ComfyUI check: set COMFYUI_DIR (and COMFYUI_PYTHON)")
    comfy_dir, python = paths
    lora = trained["out"].result[0]
    out = subprocess.run(
        [python, str(ROOT / "tests" / "lora_check_comfyui.py"), str(comfy_dir), str(tiny_models.flux), lora],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "RESULT " in out.stdout, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert result["unmatched"] == [] and result["patched_weights"] == result["modules"] > 0


def test_the_lora_loads_in_diffusers_through_peft(trained):
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    lora = trained["out"].result[0]
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "lora_check_diffusers.py"), lora],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "RESULT " in out.stdout, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert result["injected"] == result["expected"] > result["file_modules"] > 0  # every module, fused ones split
    assert result["nonzero_up"] == result["injected"]  # trained weights arrived, not fresh zeros
