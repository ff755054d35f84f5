"""FP8 matmuls and several GPUs against the real sd-scripts and accelerate, on the CPU.

* our launcher (--fp8-matmul --fp8-t5 --compile-blocks) swaps the tiny FLUX's token linears for FP8
  linears inside sd-scripts, LoRA wraps and trains them, torch.compile compiles the blocks; torch's
  CPU `_scaled_mm` computes what the GPU kernel computes (slowly);
* the trainer refuses fp8_matmul=on without FP8 tensor cores and GPUs it cannot see, before writing;
* under accelerate (`gpu_ids` of two or more) every rank runs our launcher, and killing the launcher's
  process group ends every rank: torch's elastic agent starts ranks in sessions of their own. Two
  ranks of real sd-scripts need ~2 x 11 GB of RAM on the CPU (the full-size T5-XXL), more than this
  machine has, so the ranks here run a small accelerate script; the GPU run of sd-scripts itself
  needs a machine with two GPUs.
"""

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from packload import ROOT, mvic_module
from sdscripts_env import SKIP_REASON, sd_scripts_paths
from test_training_sdscripts import FAST, make_dataset, settings_for

arguments = mvic_module("training.arguments")
trainer = mvic_module("training.trainer")
environment = mvic_module("training.environment")
presets = mvic_module("training.presets")
fp8 = mvic_module("training.fp8")
multi_gpu = mvic_module("training.multi_gpu")
preflight = mvic_module("training.preflight")
run_dataset = mvic_module("training.run_dataset")

pytestmark = pytest.mark.skipif(sd_scripts_paths() is None, reason=SKIP_REASON)
LAUNCHER = ROOT / "trainers" / "launch_sd_scripts.py"


@pytest.fixture(scope="module")
def sd_env():
    checkout, python = sd_scripts_paths()
    return environment.TrainerEnvironment(checkout.resolve(), python)


@pytest.fixture(scope="module")
def tiny_models():
    import tiny_models as tm

    return arguments.FluxModelFiles(
        flux=tm.tiny_flux(), clip_l=tm.tiny_clip_l(), t5xxl=tm.zero_t5xxl(), ae=tm.tiny_ae()
    )


def test_launcher_trains_a_lora_through_fp8_linears_compiled(tmp_path, sd_env, tiny_models):
    dataset = make_dataset(tmp_path / "dataset", sets=1)
    settings = settings_for(
        tmp_path, tiny_models, dataset, steps=2, tokenizer_cache_dir=mvic_module("files").TOKENIZERS_DIR
    )
    run_dataset.prepare_run_dataset(
        preflight.read_dataset(dataset), settings.run_dataset_dir, settings.dataset_config, {}
    )
    args = arguments.training_arguments(settings, presets.CPU_PRESET) + arguments.parse_extra_args(FAST)
    command = arguments.launch_command(
        sd_env.python,
        sd_env.checkout,
        LAUNCHER,
        os.getpid(),
        args,
        launcher_args=["--fp8-matmul", "--fp8-t5", "--compile-blocks"],
    )
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=1500, env=environment.child_env(), cwd=tmp_path
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "[mvic] fp8 matmul: 10 FLUX linears stored in e4m3" in log  # 8 in the double block, 2 in the single one
    assert "[mvic] T5-XXL cast to e4m3" in log and "prepare T5XXL for fp8" in log  # sd-scripts' own fp8-T5 path
    assert "[mvic] torch.compile: 2 FLUX blocks" in log and "steps: 100%" in log
    from safetensors.torch import load_file

    lora = load_file(str(settings.final_lora))
    ups = {k.split(".")[0]: v.float().abs().sum().item() for k, v in lora.items() if k.endswith("lora_up.weight")}
    # LoRA still finds every FLUX linear (by class name) and each one trained
    for name in (
        "double_blocks_0_img_attn_qkv",
        "double_blocks_0_txt_mlp_2",
        "single_blocks_0_linear1",
        "single_blocks_0_linear2",
        "double_blocks_0_img_mod_lin",
    ):
        assert ups[f"lora_unet_{name}"] > 0, name
    assert len(ups) == 13


def test_trainer_refuses_fp8_on_without_fp8_tensor_cores(tmp_path, sd_env, tiny_models):
    dataset = make_dataset(tmp_path / "dataset", sets=1)
    settings = settings_for(tmp_path, tiny_models, dataset, steps=2, fp8_matmul="on")
    with pytest.raises(fp8.Fp8Refused, match=r"fp8_matmul=on: no CUDA GPU is visible.*compute capability 8\.9"):
        trainer.train_lora(settings, sd_env, tmp_path / "loras", "x", "cpu")
    assert not (tmp_path / "run").exists() and not (tmp_path / "loras").exists()


def test_trainer_refuses_gpu_ids_it_cannot_see(tmp_path, sd_env, tiny_models):
    dataset = make_dataset(tmp_path / "dataset", sets=1)
    settings = settings_for(tmp_path, tiny_models, dataset, steps=2, gpu_ids=(0, 1))
    with pytest.raises(multi_gpu.MultiGpuRefused, match=r"gpu_ids 0,1: GPU 0, 1 is not visible"):
        trainer.train_lora(settings, sd_env, tmp_path / "loras", "x", "auto")
    assert not (tmp_path / "run").exists()


def test_block_compile_keeps_gradient_checkpointing(sd_env):
    """Compiling each block's checkpoint wrapper kept every activation (the 24 preset ran out of a
    23 GiB cap on an H200; 7.3x eager's saved bytes here); compiling `_forward` saves what eager
    checkpointing saves, and the 2 double + 2 single blocks share one graph per kind."""
    results = {}
    for mode in ("eager", "blocks"):
        out = subprocess.run(
            [
                sd_env.python,
                str(ROOT / "tests" / "compile_memory_check.py"),
                str(sd_env.checkout),
                str(ROOT / "trainers"),
                mode,
            ],
            capture_output=True,
            text=True,
            timeout=1500,
            env=environment.child_env(),
        )
        assert "RESULT " in out.stdout, out.stderr[-3000:]
        results[mode] = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert results["blocks"]["saved_bytes"] == results["eager"]["saved_bytes"]
    assert 0 < results["blocks"]["graphs"] <= 3  # not one per block
    import numpy as np

    eager, compiled = np.array(results["eager"]["grad"]), np.array(results["blocks"]["grad"])
    assert np.linalg.norm(compiled - eager) <= 0.05 * np.linalg.norm(eager)


RANK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from accelerate import PartialState
    state = PartialState()
    cmdline = open("/proc/self/cmdline", "rb").read().decode().split("\\0")
    via = next(os.path.basename(arg) for arg in cmdline[1:] if arg.endswith(".py"))  # torch runs `python -u SCRIPT`
    rank = f"RANK {state.process_index}/{state.num_processes} pid {os.getpid()} sid {os.getsid(0)}"
    print(f"{rank} via {via} {state.distributed_type}", flush=True)
    time.sleep(120)
    """
)


def test_every_rank_runs_our_launcher_and_ends_when_its_group_is_killed(tmp_path, sd_env):
    """What happens when ComfyUI dies during a 2-GPU run: the launcher's process group goes (the
    trainer kills it on an interrupt, with SIGKILL after its grace period), and so does the reading end
    of the output pipe; ranks live in other sessions and must still end."""
    script = tmp_path / "rank_script.py"
    script.write_text(RANK_SCRIPT)
    command = arguments.launch_command(sd_env.python, tmp_path, LAUNCHER, os.getpid(), [], gpu_ids=(0, 1))
    command[command.index("--") + 1] = str(script)
    launcher = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env=environment.child_env(),
    )
    ranks, lines = {}, []
    deadline = time.monotonic() + 180
    while len(ranks) < 2 and time.monotonic() < deadline:
        line = launcher.stdout.readline()
        if not line:
            break
        lines.append(line)
        # Two ranks write to one pipe: one's line can land inside the other's (before its newline).
        for rank, pid, sid, via in re.findall(r"RANK (\d+)/2 pid (\d+) sid (\d+) via (\S+)", "".join(lines)):
            ranks[int(rank)] = {"pid": int(pid), "sid": int(sid), "via": via}
    assert sorted(ranks) == [0, 1], "".join(lines)[-3000:]
    assert all(r["via"] == "launch_sd_scripts.py" for r in ranks.values())  # hooks and watchdog in every rank
    assert all(r["sid"] != launcher.pid for r in ranks.values())  # out of reach of the group kill
    launcher.stdout.close()  # a dead ComfyUI takes its end of the output pipe with it
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    killed = time.monotonic()
    while any(_alive(r["pid"]) for r in ranks.values()) and time.monotonic() - killed < 10:
        time.sleep(0.1)
    left = [r["pid"] for r in ranks.values() if _alive(r["pid"])]
    for pid in left:  # never leave them behind, even when the assertion fails
        os.kill(pid, signal.SIGKILL)
    assert not left, "ranks outlived the launcher"
    assert time.monotonic() - killed < 5


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
