"""Watching training (issue 12, item 4): every preview sd-scripts writes is scored, shown live, logged to
scores.jsonl, plotted, and the best-scoring saved checkpoint is named.

    1. the watcher on sd-scripts' file layout (validation-scene composites whose scores differ)
    2. `python -m mvic train --sample-every 2` with the real sd-scripts on CPU and tiny random models
    3. LoRATrainer in a real ComfyUI over /prompt: live previews arrive on the websocket while it trains

Random weights give low scores, which is fine: 2 and 3 check the plumbing and that the logged numbers
are the metric's (re-scoring the preview files gives the same)."""

import io
import json
import os
import time
from pathlib import Path

import consistency_scenes as scenes
import numpy as np
import pytest
from packload import mvic_module
from PIL import Image
from trainer_data import PREVIEW_STEPS

previews = mvic_module("training.previews")
consistency = mvic_module("consistency")
layout = mvic_module("layout")
GIB = 2**30


def _sample_name(step: int, prompt: int, seed: int = 42) -> str:
    """sd-scripts' own pattern (library/flux_train_utils.py): <name>_<step:06d>_<prompt:02d>_<time>_<seed>.png"""
    return f"tiny_{step:06d}_{prompt:02d}_20261201101500_{seed}.png"


def _write_attempt(run: Path, attempt: int, base_step: int, samples: dict, checkpoints: list[int]) -> None:
    folder = run / "output" / f"attempt{attempt}"
    (folder / "sample").mkdir(parents=True)
    (folder / "mvic_attempt.json").write_text(json.dumps({"base_step": base_step, "config": "x"}))
    for (step, prompt), image in samples.items():
        Image.fromarray(image).save(folder / "sample" / _sample_name(step, prompt))
    for step in checkpoints:
        (folder / f"tiny-step{step:08d}.safetensors").write_bytes(b"lora")


def _old(run: Path) -> None:
    """Settled files: sd-scripts wrote them more than a second ago."""
    for path in run.rglob("*.png"):
        os.utime(path, (time.time() - 5, time.time() - 5))


def test_watcher_scores_new_previews_across_attempts_and_names_the_best_checkpoint(tmp_path):
    grid = layout.CompositeLayout(2, 2, 384, 384)
    sets = [scenes.true_set(seed)[0] for seed in range(4)]
    good, bad = layout.compose(sets[0], grid), layout.compose(scenes.mixed_set(sets, 0), grid)
    run = tmp_path / "run"
    _write_attempt(run, 1, 0, {(2, 0): bad, (2, 1): bad, (4, 0): good, (4, 1): good}, checkpoints=[2, 4])
    _old(run)
    shown = []
    watcher = previews.PreviewWatcher(run, 2, 2, on_preview=lambda image, rec: shown.append((image.shape, rec.step)))
    first = watcher.poll()
    assert [(s.step, s.prompt) for s in first] == [(2, 0), (2, 1), (4, 0), (4, 1)]
    assert first[2].consistency == pytest.approx(consistency.score_composite(good, 2, 2).consistency, abs=1e-4)
    assert first[0].consistency < 0.25 < first[2].consistency and "views_disagree" in first[0].flags
    assert len(shown) == 4 and shown[0][0][1] == 768  # annotated composites, for the live preview
    # A resumed attempt counts from its own start (base step 4): its step-2 preview is real step 6.
    # A preview still being written (fresh mtime) waits for the next poll.
    _write_attempt(run, 2, 4, {(2, 0): bad}, checkpoints=[2])
    watcher.min_interval = 0.0
    assert watcher.poll() == []
    summary = watcher.finish("tiny")  # sd-scripts has ended: everything is complete
    assert [(s.step, s.prompt) for s in summary.scores][-1] == (6, 0)
    assert summary.best_step == 4
    assert summary.best_checkpoint == run / "output" / "attempt1" / "tiny-step00000004.safetensors"
    assert "best saved checkpoint: step 4" in summary.text
    lines = [json.loads(line) for line in (run / "scores.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and lines[-1]["file"].startswith("output/attempt2/sample/")
    assert (run / "scores.png").is_file() and summary.curve.shape == (256, 512, 3)
    # A second watcher (the next run of the same name) does not score the same files again.
    again = previews.PreviewWatcher(run, 2, 2)
    assert again.poll(final=True) == []


def test_no_previews_is_an_empty_curve_and_a_hint(tmp_path):
    arguments = mvic_module("training.arguments")
    models = arguments.FluxModelFiles(*(tmp_path / n for n in ("f", "c", "t", "a")))
    settings = arguments.TrainingSettings(
        dataset_dir=tmp_path, models=models, run_dir=tmp_path / "run", output_name="x"
    )
    summary = previews.watcher_for(settings).finish("x")
    assert summary.scores == [] and summary.best_checkpoint is None and "set sample_every_n_steps" in summary.text
    assert not (tmp_path / "run").exists()


# --- real sd-scripts -------------------------------------------------------------------------------------


def _check_logged_scores_are_the_metrics(run: Path, rows: int = 2, cols: int = 2) -> list[dict]:
    lines = [json.loads(line) for line in (run / "scores.jsonl").read_text().splitlines()]
    for line in lines:
        image = np.asarray(Image.open(run / line["file"]).convert("RGB"))
        metric = consistency.score_composite(image, rows, cols).consistency
        assert line["consistency"] == pytest.approx(metric, abs=1e-4)
    return lines


def test_cli_train_scores_every_preview(cli_training):
    """The shared CLI run (wide 1x2 composites, previews every 2 steps)."""
    out, run = cli_training["out"], cli_training["run"]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = _check_logged_scores_are_the_metrics(run, rows=1, cols=2)
    assert sorted((line["step"], line["prompt"]) for line in lines) == [(2, 0), (2, 1), (4, 0), (4, 1)]
    assert out.stdout.count("preview step ") == 4 and "preview step 2 prompt 1: consistency" in out.stdout
    summary = out.stdout.strip().splitlines()[-1]
    print(f"\n[{summary}]")
    assert summary.startswith("previews: 4 scored over 2 step(s)") and "best saved checkpoint: step " in summary
    assert (run / "scores.png").is_file()
    prompts = (run / "sample_prompts.txt").read_text(encoding="utf-8").splitlines()
    assert len(prompts) == 2 and all(f" --s {PREVIEW_STEPS} --d 42 " in line for line in prompts)  # --sample-steps
    # sd-scripts encodes each distinct prompt and negative before training: the negative (unused at cfg 1) is the
    # prompt itself, so the T5-XXL runs once per prompt and not once more for an empty negative
    assert (run / "train.log").read_text(encoding="utf-8").count("cache Text Encoder outputs for prompt:") == 2


def test_trainer_node_shows_live_previews_in_real_comfyui(node_training):
    from comfy_harness import TEXT_FRAME, frame_type

    run, entry = node_training["run"], node_training["entry"]
    lines = _check_logged_scores_are_the_metrics(run, rows=1, cols=2)
    assert len(lines) == 4
    # Live: one preview picture per scored preview reached the browser's socket while training ran.
    pictures = [Image.open(io.BytesIO(f[8:])) for f in node_training["frames"] if frame_type(f) != TEXT_FRAME]
    # each the 128x64 composite, annotated: a banner on top
    assert len(pictures) == len(lines) and all(p.width == 128 and p.height > 64 for p in pictures)
    text = entry["outputs"]["7"]["text"][1]
    assert text.startswith("previews: 4 scored over 2 step(s)")
    best = entry["outputs"]["3"]["text"][0]
    assert best.endswith(".safetensors") and Path(best).is_file() and str(run) in best
    (curve,) = entry["outputs"]["2"]["images"]
    assert (node_training["comfy"] / curve["type"] / curve["subfolder"] / curve["filename"]).is_file()
