"""CUDA out-of-memory -> an error that names the next-lower VRAM preset, on a REAL sd-scripts log.

tests/fixtures/sdscripts_cuda_oom.log is the whole train.log (26.7 KB) written by our trainer on the
GPU machine (benchmarks/gpu/bench.sh, run "oom24": the '24' preset with the child's CUDA memory
capped at 13 GiB through benchmarks/gpu/memcap/sitecustomize.py, on an NVIDIA H200); see BENCHMARKS.md. It is fed
through the
same code the trainer uses: progress.split_console / is_out_of_memory, process._inspect (what
run_child does with each line), process.run_child on a child that replays it, and
trainer._raise_for_failure.
"""

import sys

import pytest
from packload import ROOT, mvic_module

presets = mvic_module("training.presets")
progress = mvic_module("training.progress")
process = mvic_module("training.process")
trainer = mvic_module("training.trainer")
arguments = mvic_module("training.arguments")

FIXTURE = ROOT / "tests" / "fixtures" / "sdscripts_cuda_oom.log"
EXPECTED_HINT = {"80": "48", "48": "24", "24": "16", "16": "12", "12": "8"}


def fixture_text() -> str:
    return FIXTURE.read_text(encoding="utf-8", errors="replace")


def console_lines(text: str, chunk: int = 997) -> list[str]:
    """Lines as run_child sees them: the stream arrives in arbitrary chunks, tqdm redraws with '\\r'."""
    lines, pending = [], ""
    for start in range(0, len(text), chunk):
        done, pending = progress.split_console(pending + text[start : start + chunk])
        lines += done
    return lines + progress.split_console(pending + "\n")[0]


def result_from_fixture() -> "process.ChildResult":
    result = process.ChildResult(returncode=1, log_path=FIXTURE)
    for line in console_lines(fixture_text()):
        process._inspect(line, result, None)
    return result


def settings(tmp_path):
    models = arguments.FluxModelFiles(*(tmp_path / f"{n}.safetensors" for n in ("flux", "clip_l", "t5xxl", "ae")))
    return arguments.TrainingSettings(
        dataset_dir=tmp_path / "ds", models=models, run_dir=tmp_path / "run", output_name="lora"
    )


def test_fixture_is_a_real_cuda_oom_from_sd_scripts():
    text = fixture_text()
    assert len(text.encode("utf-8")) <= 50_000
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate" in text
    assert "Traceback (most recent call last)" in text
    assert "train_network.py" in text  # raised inside sd-scripts' training loop, not a synthetic line
    assert "[mvic]" in text  # written by our trainer's log streaming


def test_progress_parser_finds_the_oom_line():
    lines = console_lines(fixture_text())
    oom = [line for line in lines if progress.is_out_of_memory(line)]
    assert oom, "no out-of-memory line recognised"
    assert any("CUDA out of memory" in line for line in oom)
    # No step line is mistaken for an OOM, and no OOM line for a step.
    assert not [line for line in oom if progress.parse_step(line) is not None]


def test_inspect_marks_the_result_out_of_memory():
    result = result_from_fixture()
    assert result.out_of_memory
    assert not result.no_data


@pytest.mark.parametrize("preset_name, lower", sorted(EXPECTED_HINT.items()))
def test_error_names_the_next_lower_preset(tmp_path, preset_name, lower):
    preset = presets.PRESETS[preset_name]
    with pytest.raises(trainer.TrainingError) as info:
        trainer._raise_for_failure(result_from_fixture(), settings(tmp_path), preset)
    message = str(info.value)
    assert f"choose the '{lower}' VRAM preset" in message
    assert f"with the '{preset_name}' preset" in message
    assert str(FIXTURE) in message


def test_lowest_preset_gives_other_advice(tmp_path):
    with pytest.raises(trainer.TrainingError, match="lower the resolution or close other programs"):
        trainer._raise_for_failure(result_from_fixture(), settings(tmp_path), presets.PRESETS["8"])


def test_run_child_replaying_the_log_reports_oom(tmp_path):
    """The whole streaming path: a child prints the real log (in pieces) and exits 1, as sd-scripts did."""
    replay = (
        "import sys, time\n"
        f"data = open({str(FIXTURE)!r}, 'rb').read()\n"
        "for i in range(0, len(data), 4096):\n"
        "    sys.stdout.buffer.write(data[i:i + 4096]); sys.stdout.buffer.flush()\n"
        "sys.exit(1)\n"
    )
    log = tmp_path / "train.log"
    result = process.run_child([sys.executable, "-c", replay], log, {"PATH": "/usr/bin:/bin"}, tmp_path)
    assert result.returncode == 1
    assert result.out_of_memory
    assert log.read_bytes().endswith(FIXTURE.read_bytes())
    with pytest.raises(trainer.TrainingError, match="choose the '16' VRAM preset"):
        trainer._raise_for_failure(result, settings(tmp_path), presets.PRESETS["24"])
