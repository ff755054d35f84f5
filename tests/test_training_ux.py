"""Trainer UX (issue 14, point 5).

1. `setup-trainer` picks CPU torch where no NVIDIA GPU is visible and says so; an explicit --torch wins;
   the README documents --torch
2. `check-trainer` (the real sd-scripts Python, on this GPU-less machine) says training would run on the CPU
3. the phases before training, read from a real sd-scripts log
4. `python -m mvic train` with the real sd-scripts: phase lines, each step's own loss (one line per step,
   equal to losses.jsonl, consistent with sd-scripts' running average), modelspec.resolution = the
   composites' size, started_by.json = the command line
5. LoRATrainer in a real ComfyUI over /prompt: phase and step-loss text under the node, the bar through
   the caching phases, started_by.json = the prompt and workflow that was queued
"""

import json
import os
import re
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from packload import ROOT, mvic_module

progress = mvic_module("training.progress")
FIXTURES = ROOT / "tests" / "fixtures"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _setup_dry_run(checkout: Path, path: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [sys.executable, "-m", "mvic", "setup-trainer", "--sd-scripts", str(checkout), "--dry-run", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def _path_without_nvidia_smi(tmp_path: Path) -> str:
    """This PATH with the python that runs the CLI, without any nvidia-smi."""
    folders = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "nvidia-smi").exists()]
    return os.pathsep.join(folders)


def test_setup_trainer_picks_cpu_torch_without_an_nvidia_gpu_and_says_so(tmp_path):
    if Path("/proc/driver/nvidia").exists():
        pytest.skip("this machine has an NVIDIA driver")
    (tmp_path / "flux_train_network.py").write_text("")
    out = _setup_dry_run(tmp_path, _path_without_nvidia_smi(tmp_path))
    assert out.returncode == 0, out.stderr
    print(f"\n{out.stdout}")
    lines = out.stdout.splitlines()
    assert lines[0].startswith("no NVIDIA GPU visible") and "installing CPU torch" in lines[0] and "--torch" in lines[0]
    (torch_line,) = [line for line in lines if " install torch" in line]
    assert torch_line.endswith(f"-m pip install torch torchvision --index-url {CPU_INDEX}")
    assert not (tmp_path / "venv").exists()


def test_setup_trainer_installs_cuda_torch_where_nvidia_smi_is_found(tmp_path):
    (tmp_path / "checkout").mkdir()
    (tmp_path / "checkout" / "flux_train_network.py").write_text("")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (tools / "nvidia-smi").chmod(0o755)
    out = _setup_dry_run(tmp_path / "checkout", f"{tools}{os.pathsep}{_path_without_nvidia_smi(tmp_path)}")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("NVIDIA GPU visible: installing CUDA torch")
    (torch_line,) = [line for line in lines if " install torch" in line]
    assert torch_line.endswith("-m pip install torch torchvision") and "--index-url" not in out.stdout


def test_an_explicit_torch_always_wins(tmp_path):
    (tmp_path / "flux_train_network.py").write_text("")
    spec = "torch==2.7.1 torchvision --index-url https://download.pytorch.org/whl/cu128"
    out = _setup_dry_run(tmp_path, _path_without_nvidia_smi(tmp_path), "--torch", spec)
    assert out.returncode == 0, out.stderr
    (torch_line,) = [line for line in out.stdout.splitlines() if " install torch" in line]
    assert torch_line.endswith(f"-m pip install {spec}")
    assert "no NVIDIA GPU" not in out.stdout and CPU_INDEX not in out.stdout


def test_readme_documents_torch():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    training = readme.split("\n## Training (LoRATrainer)", 1)[1].split("\n## ", 1)[0]
    assert "`setup-trainer --torch`" in training and CPU_INDEX in training and "nvidia-smi" in training
    help_text = subprocess.run(
        [sys.executable, "-m", "mvic", "setup-trainer", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    assert "--torch" in help_text and "CPU torch" in help_text


def test_check_trainer_says_plainly_that_training_would_run_on_the_cpu():
    from sdscripts_env import SKIP_REASON, sd_scripts_paths

    paths = sd_scripts_paths()
    if paths is None:
        pytest.skip(SKIP_REASON)
    out = subprocess.run(
        [sys.executable, "-m", "mvic", "check-trainer", "--sd-scripts", str(paths[0]), "--python", paths[1]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(f"\n{out.stdout}")
    if re.search(r"^  GPU \d+:", out.stdout, re.MULTILINE):
        pytest.skip("this sd-scripts Python sees a CUDA GPU")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "  no CUDA GPU visible" in out.stdout
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("ready to train, but ON THE CPU:") and "would run on the CPU" in last


def test_phases_are_read_from_a_real_sd_scripts_log():
    raw = (FIXTURES / "sdscripts_cpu_train.log").read_text(encoding="utf-8")
    lines, _ = progress.split_console(raw + "\n")
    reader = progress.PhaseReader()
    seen = [p for p in map(reader.read, lines) if p is not None]
    texts = [p.text() for p in seen]
    assert texts[:5] == [f"loading models {i}/4" for i in range(5)]
    for phase in ("caching latents", "caching text-encoder outputs"):
        counted = [t for t in texts if t.startswith(phase + " ")]
        assert counted[0] == f"{phase} 0/2" and counted[-1] == f"{phase} 2/2", texts
    order = [texts.index(t) for t in ("loading models 4/4", "caching latents 2/2", "caching text-encoder outputs 2/2")]
    assert order == sorted(order)
    assert progress.parse_step_loss("MVIC_LOSS 3 0.4187254309654236") == (3, 0.4187254309654236)
    assert progress.parse_step_loss("steps: 3/4 avr_loss=0.42") is None


def test_losses_file_keeps_the_steps_before_a_resume(tmp_path):
    trainer = mvic_module("training.trainer")
    (tmp_path / "losses.jsonl").write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (1, 2, 3)))
    trainer.keep_losses_until(tmp_path, 2)
    assert [json.loads(line)["step"] for line in (tmp_path / "losses.jsonl").read_text().splitlines()] == [1, 2]
    trainer.keep_losses_until(tmp_path, 0)  # a fresh start: a new curve
    assert (tmp_path / "losses.jsonl").read_text() == ""


# ---- real sd-scripts (run under the heavy lock) ----


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "losses.jsonl").read_text().splitlines())]


def _check_running_average(run: Path, losses: list[tuple[int, float]]) -> None:
    """sd-scripts' own avr_loss (3 digits) is the mean of the last epoch's step losses: the reported losses
    are the steps' own. (Its recorder keeps one loss per batch of the epoch.)"""
    log = (run / "train.log").read_text(errors="replace")
    per_epoch = int(re.search(r"num batches per epoch / \S+: (\d+)", log).group(1))
    shown = {}
    for line in progress.split_console(log + "\n")[0]:
        step = progress.parse_step(line)
        if step is not None and step.loss is not None:
            shown[step.step] = step.loss  # the last redraw of a step carries that step's average
    values = [loss for _, loss in losses]
    for step, average in shown.items():
        window = values[max(0, step - per_epoch) : step]
        assert average == pytest.approx(float(np.mean(window)), rel=6e-3, abs=6e-3), (step, average, values)
    assert len(set(values)) == len(values)  # full precision, not a rounded running average


def _modelspec_resolution(lora: Path) -> str:
    with open(lora, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length))["__metadata__"]["modelspec.resolution"]


def test_cli_train_shows_phases_and_step_losses_and_keeps_its_command(cli_training):
    from trainer_data import PREVIEW_STEPS

    out, run, command = cli_training["out"], cli_training["run"], cli_training["command"]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    print("\n" + "\n".join(line for line in lines if line.startswith(("[mvic] loading", "[mvic] caching", "step "))))
    # Phases, in order, with their counts.
    phase_lines = [line for line in lines if line.startswith("[mvic] ") and not line.startswith("[mvic] preset")]
    for expected in (
        "[mvic] loading models 4/4",
        "[mvic] caching latents 2/2",
        "[mvic] caching text-encoder outputs 1/1",  # the CPU preset encodes both captions in one batch
        f"[mvic] sampling previews {PREVIEW_STEPS}/{PREVIEW_STEPS}",  # a preview's denoising bar, named as such
    ):
        assert expected in phase_lines, out.stdout
    caching_prompts = {line for line in phase_lines if line.startswith("[mvic] caching sample")}
    assert caching_prompts == {"[mvic] caching sample prompts"}  # sd-scripts counts none of it
    assert any(
        line.startswith("[mvic] loading models 0/4 (") and line.endswith(".safetensors)") for line in phase_lines
    )
    order = [lines.index(t) for t in ("[mvic] loading models 4/4", "[mvic] caching text-encoder outputs 1/1")]
    assert order == sorted(order) and order[-1] < lines.index(next(line for line in lines if line.startswith("step ")))
    # One line per step, each with that step's own loss, equal to losses.jsonl.
    steps = [re.fullmatch(r"step (\d+)/4 loss (\S+)", line) for line in lines if line.startswith("step ")]
    assert all(steps) and [int(s.group(1)) for s in steps] == [1, 2, 3, 4], out.stdout
    losses = _losses(run)
    assert [step for step, _ in losses] == [1, 2, 3, 4]
    assert [float(s.group(2)) for s in steps] == pytest.approx([loss for _, loss in losses], rel=1e-5)
    _check_running_average(run, losses)
    # The LoRA says the composites' real size; the run folder keeps the command (never the environment).
    assert _modelspec_resolution(cli_training["loras"] / "wide.safetensors") == "128x64"
    started = json.loads((run / "started_by.json").read_text())
    assert started["started_by"] == "command line" and started["command"][1:] == command[1:]
    assert started["cwd"] == str(ROOT) and "not-recorded" not in (run / "started_by.json").read_text()
    assert (run / "output" / "attempt1" / "started_by.json").read_text() == (run / "started_by.json").read_text()


def _train_in_comfyui(server, prompt: dict, workflow: dict, timeout: float) -> tuple[Path, list[str], list[dict]]:
    """Queue the one-trainer prompt (node "7") with its workflow as the frontend sends it; the run folder, the
    node's progress texts (all phases must show) and the websocket's events."""
    from comfy_harness import progress_texts, receive_until_done
    from websockets.sync.client import connect

    client = uuid.uuid4().hex
    try:
        with connect(
            f"ws://127.0.0.1:{server.port}/ws?clientId={client}", max_size=2**26, ping_interval=None, open_timeout=60
        ) as socket:
            queued = server.post(
                "/prompt",
                {"prompt": prompt, "client_id": client, "extra_data": {"extra_pnginfo": {"workflow": workflow}}},
            )
            frames, events = receive_until_done(socket, queued["prompt_id"], timeout=timeout)
    finally:
        server.stop()
    shown = [text for node, text in progress_texts(frames) if node == "7"]
    print("\n" + "\n".join(shown))
    for expected in ("loading models 4/4", "caching latents 2/2", "caching text-encoder outputs 2/2"):
        assert expected in shown, shown
    return server.base_dir / "output" / "mvic_runs" / "wide", shown, events


def _check_started_by_comfyui(run: Path, prompt: dict, workflow: dict) -> None:
    """ComfyUI's PROMPT as SaveImage embeds it (the queued prompt; ComfyUI adds its is_changed) and the workflow."""
    started = json.loads((run / "started_by.json").read_text())
    assert started["started_by"] == "ComfyUI" and started["workflow"] == workflow
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in started["prompt"].items()} == prompt


def test_trainer_node_shows_phases_and_step_losses_and_keeps_its_workflow(node_training):
    from comfy_harness import progress_texts
    from trainer_data import NODE_WORKFLOW, PREVIEW_STEPS

    run, events = node_training["run"], node_training["events"]
    shown = [text for node, text in progress_texts(node_training["frames"]) if node == "7"]
    for expected in ("loading models 4/4", "caching latents 2/2", "caching text-encoder outputs 1/1"):
        assert expected in shown, shown
    step_texts = [re.fullmatch(r"step (\d+)/4, loss (\S+)", t) for t in shown if t.startswith("step ")]
    losses = _losses(run)
    assert all(step_texts) and [int(s.group(1)) for s in step_texts] == [1, 2, 3, 4] == [s for s, _ in losses]
    assert [float(s.group(2)) for s in step_texts] == pytest.approx([loss for _, loss in losses], rel=1e-5)
    # The bar follows model loading (4 models) and caching (2 images), then the steps; the previews' own
    # sampling bars (of preview_steps) come between the steps.
    bars = [e["data"] for e in events if e["type"] == "progress" and e["data"].get("node") == "7"]
    ours = [(b["value"], b["max"]) for b in bars]
    cached = max(i for i, bar in enumerate(ours) if bar == (2, 2))
    steps = list(dict.fromkeys(bar for bar in ours[cached:] if bar[1] == 4))
    assert (4, 4) in ours[:cached] and steps == [(1, 4), (2, 4), (3, 4), (4, 4)], ours
    assert (PREVIEW_STEPS, PREVIEW_STEPS) in ours[cached:], ours
    _check_started_by_comfyui(run, node_training["prompt"], NODE_WORKFLOW)
    lora = node_training["comfy"] / "models" / "loras" / "mvic" / "wide.safetensors"
    assert _modelspec_resolution(lora) == "128x64"


# ---- the node in a real ComfyUI with a stand-in trainer (no heavy lock needed) ----

REPLAY = """
import json, struct, sys, time
from pathlib import Path
from library import train_util  # the real checkout's recorder: the launcher's hook reports from it
args = sys.argv[1:]
log = Path({fixture!r}).read_text(encoding="utf-8")
sys.stdout.write(log.split("steps:")[0])  # sd-scripts' real output up to training: loading, caching
sys.stdout.flush()
recorder = train_util.LossRecorder()
for step, loss in enumerate({losses!r}, 1):
    sys.stderr.write(f"\\rsteps: {{25 * step}}%|##  | {{step}}/4 [00:0{{step}}<00:00,  1.00s/it]")
    recorder.add(epoch=0, step=step - 1, loss=loss)
    average = recorder.moving_average
    bar = f"{{25 * step}}%|## | {{step}}/4 [00:0{{step}}<00:00, 1.00s/it"
    sys.stderr.write(f"\\rsteps: {{bar}}, avr_loss={{average:.3g}}]")
    sys.stderr.flush()
header = json.dumps({{"__metadata__": {{"modelspec.resolution": "1024x1024"}},
                      "w": {{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}}}).encode()
out = Path(args[args.index("--output_dir") + 1]) / (args[args.index("--output_name") + 1] + ".safetensors")
out.write_bytes(struct.pack("<Q", len(header)) + header + b"\\0\\0\\0\\0")
"""
STAND_IN_LOSSES = [0.8125, 0.4375, 0.6015625, 0.25]


def test_trainer_node_with_a_stand_in_trainer_shows_phases_losses_and_keeps_its_workflow(tmp_path):
    """sd-scripts replaced by a script that replays a real sd-scripts log up to training and feeds the real
    checkout's LossRecorder (through our launcher and its hook), so the node-facing parts run in a real
    ComfyUI in seconds. The real-training versions: the tests above."""
    from comfy_harness import comfyui_paths
    from sdscripts_env import SKIP_REASON, sd_scripts_paths
    from trainer_data import NODE_WORKFLOW, comfyui_with_sd_scripts, copy_checkout, tiny_trainer_inputs, wide_dataset

    paths = sd_scripts_paths()
    if paths is None or comfyui_paths() is None:
        pytest.skip(SKIP_REASON + "; and COMFYUI_DIR")
    import tiny_models

    checkout = copy_checkout(paths[0], tmp_path / "stand_in")
    (checkout / "flux_train_network.py").write_text(
        REPLAY.format(fixture=str(FIXTURES / "sdscripts_cpu_train.log"), losses=STAND_IN_LOSSES)
    )
    files = {
        "flux": tiny_models.tiny_flux(),
        "clip_l": tiny_models.tiny_clip_l(),
        "t5xxl": tiny_models.zero_t5xxl(),
        "ae": tiny_models.tiny_ae(),
    }
    setup = {"models": files, "dataset": wide_dataset(tmp_path / "dataset"), "python": paths[1]}
    server = comfyui_with_sd_scripts(setup, tmp_path / "comfy", checkout)
    prompt = {"7": {"class_type": "MVIC_LoRATrainer", "inputs": tiny_trainer_inputs(setup, "wide", extra_args="")}}
    run, shown, events = _train_in_comfyui(server, prompt, NODE_WORKFLOW, timeout=300)
    assert [t for t in shown if t.startswith("step ")] == [
        f"step {i}/4, loss {loss:.6g}" for i, loss in enumerate(STAND_IN_LOSSES, 1)
    ]
    assert _losses(run) == list(enumerate(STAND_IN_LOSSES, 1))  # the steps' own losses, not the averages
    ours = [
        (e["data"]["value"], e["data"]["max"])
        for e in events
        if e["type"] == "progress" and e["data"].get("node") == "7"
    ]
    assert (4, 4) in ours[:-4] and (2, 2) in ours[:-4] and ours[-4:] == [(1, 4), (2, 4), (3, 4), (4, 4)], ours
    _check_started_by_comfyui(run, prompt, NODE_WORKFLOW)
    assert _modelspec_resolution(tmp_path / "comfy" / "models" / "loras" / "mvic" / "wide.safetensors") == "128x64"
