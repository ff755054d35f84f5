"""Watching training: sd-scripts' preview composites (--sample_every_n_steps) scored as they appear.

sd-scripts writes `<output_dir>/sample/<name>_<step:06d>_<prompt:02d>_<time>[_<seed>].png` between steps.
A watcher, polled from the progress callback, finds new previews under every attempt of the run (a resumed
attempt counts its steps from its own start, recorded in mvic_attempt.json), scores each with the
consistency metric, appends a line to `<run>/scores.jsonl` and hands the annotated picture to a live
preview. At the end: the per-checkpoint curve (`<run>/scores.png`) and the saved checkpoint whose step
scored best. Nothing here changes what sd-scripts does; it only reads what it writes.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..consistency.score import score_composite
from ..consistency.sheet import annotate
from ..export.dataset import encode_image
from ..files import atomic_write_bytes
from ..images import ImageError, load_rgb, to_array
from ..layout import split_boxes
from .run_state import ATTEMPT_FILE

log = logging.getLogger(__name__)

SAMPLE_NAME = re.compile(r"_(\d{6})_(\d{2})_\d{14}(?:_\d+)?\.png$")  # step-triggered previews (not e000001)
SCORES_FILE = "scores.jsonl"
CURVE_FILE = "scores.png"
SETTLE_SECONDS = 1.0  # sd-scripts writes previews in place: a file this old is complete


@dataclass
class PreviewScore:
    step: int  # the real training step (resumed attempts included)
    prompt: int  # index into the preview prompts
    file: str  # relative to the run folder
    consistency: float
    duplicate_pairs: int
    flags: list[str] = field(default_factory=list)


@dataclass
class PreviewSummary:
    scores: list[PreviewScore]
    curve: np.ndarray  # H x W x 3 uint8: mean consistency per previewed step
    best_step: int | None = None
    best_checkpoint: Path | None = None  # the LoRA sd-scripts saved at the best-scoring step
    text: str = ""


def read_scores(run_dir: Path) -> list[PreviewScore]:
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        return []
    scores = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            scores.append(PreviewScore(**json.loads(line)))
        except (ValueError, TypeError):
            continue  # a line cut short by a crash costs that one score
    return scores


def _base_step(attempt: Path) -> int:
    try:
        return int(json.loads((attempt / ATTEMPT_FILE).read_text())["base_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class PreviewWatcher:
    """Polled (from any one thread at a time) while sd-scripts runs; `finish()` once it has ended."""

    def __init__(
        self,
        run_dir: Path,
        rows: int,
        cols: int,
        on_preview: Callable[[np.ndarray, PreviewScore], None] | None = None,
        min_interval: float = 0.5,
        active: bool = True,
    ):
        self.run_dir, self.rows, self.cols = Path(run_dir), rows, cols
        self.on_preview, self.min_interval, self.active = on_preview, min_interval, active
        self.seen = {score.file for score in read_scores(self.run_dir)} if active else set()
        self._last_poll = 0.0

    def poll(self, final: bool = False) -> list[PreviewScore]:
        """Score the previews that appeared since the last call (settled files only, unless final)."""
        now = time.monotonic()
        if not self.active or (not final and now - self._last_poll < self.min_interval):
            return []
        self._last_poll = now
        new = []
        for attempt in sorted((self.run_dir / "output").glob("attempt*")):
            base = _base_step(attempt)
            for path in sorted((attempt / "sample").glob("*.png")):
                name = path.relative_to(self.run_dir).as_posix()
                if name in self.seen or not (final or time.time() - path.stat().st_mtime >= SETTLE_SECONDS):
                    continue
                match = SAMPLE_NAME.search(path.name)
                self.seen.add(name)
                if match:
                    scored = self._score(path, name, base + int(match.group(1)), int(match.group(2)))
                    new += [scored] if scored else []
        return new

    def _score(self, path: Path, name: str, step: int, prompt: int) -> PreviewScore | None:
        try:
            image = to_array(load_rgb(path))
            score = score_composite(image, self.rows, self.cols)
        except (ImageError, ValueError) as exc:  # unreadable, or not the dataset's grid
            log.warning("preview %s not scored: %s", name, exc)
            return None
        record = PreviewScore(step, prompt, name, round(score.consistency, 4), score.duplicate_pairs, score.flags)
        with open(self.run_dir / SCORES_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(record)) + "\n")
        if self.on_preview is not None:
            boxes = split_boxes(image.shape[0], image.shape[1], self.rows, self.cols)
            self.on_preview(annotate(image, score, boxes), record)
        return record

    def finish(self, output_name: str) -> PreviewSummary:
        """Score what is left, draw the curve into the run folder, name the best saved checkpoint."""
        if not self.active:
            return PreviewSummary([], score_curve_image({}, None), text=_summary_text(PreviewSummary([], None), {}))
        self.poll(final=True)
        scores = read_scores(self.run_dir)
        means = _mean_per_step(scores)
        checkpoints = saved_checkpoints(self.run_dir, output_name)
        scored_saves = [step for step in means if step in checkpoints]
        best = max(scored_saves, key=lambda step: (means[step], step)) if scored_saves else None
        curve = score_curve_image(means, best)
        atomic_write_bytes(self.run_dir / CURVE_FILE, encode_image(curve, "png"))
        summary = PreviewSummary(scores, curve, best, checkpoints.get(best))
        summary.text = _summary_text(summary, means)
        return summary


def _mean_per_step(scores: list[PreviewScore]) -> dict[int, float]:
    by_step: dict[int, list[float]] = {}
    for score in scores:
        by_step.setdefault(score.step, []).append(score.consistency)
    return {step: float(np.mean(values)) for step, values in sorted(by_step.items())}


def saved_checkpoints(run_dir: Path, output_name: str) -> dict[int, Path]:
    """Real step -> the LoRA file sd-scripts saved then (`<name>-step<N>.safetensors`, every attempt)."""
    pattern = re.compile(re.escape(output_name) + r"-step(\d{8})\.safetensors$")
    found = {}
    for attempt in sorted((Path(run_dir) / "output").glob("attempt*")):
        base = _base_step(attempt)
        for path in attempt.glob(f"{output_name}-step*.safetensors"):
            match = pattern.search(path.name)
            if match:
                found[base + int(match.group(1))] = path
        finished = attempt / "mvic_finished.json"
        if finished.is_file() and (attempt / f"{output_name}.safetensors").is_file():
            steps = json.loads(finished.read_text()).get("steps")
            if isinstance(steps, int):
                found.setdefault(steps, attempt / f"{output_name}.safetensors")
    return found


def _summary_text(summary: PreviewSummary, means: dict[int, float]) -> str:
    if not means:
        return "previews: none scored (set sample_every_n_steps; sd-scripts writes previews to <run>/output/*/sample)"
    top = max(means, key=lambda step: (means[step], step))
    text = (
        f"previews: {len(summary.scores)} scored over {len(means)} step(s); "
        f"best preview at step {top} ({means[top]:.2f})"
    )
    if summary.best_checkpoint is not None:
        best = summary.best_step
        return f"{text}; best saved checkpoint: step {best} ({means[best]:.2f}) {summary.best_checkpoint}"
    return (
        f"{text}; no checkpoint was saved at a previewed step "
        "(make save_every_n_steps a multiple of sample_every_n_steps)"
    )


def score_curve_image(means: dict[int, float], best: int | None, width: int = 512, height: int = 256) -> np.ndarray:
    """Mean preview consistency per step on a fixed 0-1 axis, the best saved step marked."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 40, width - 14, 14, height - 28
    draw.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    for value in (0.0, 0.5, 1.0):
        y = bottom - value * (bottom - top)
        draw.line((left, y, right, y), fill=(225, 225, 225))
        draw.text((6, y - 6), f"{value:.1f}", fill=(60, 60, 60))
    if not means:
        draw.text((left + 8, top + 8), "no preview scored yet", fill=(80, 80, 80))
        return np.asarray(image)
    steps = list(means)
    first, last = steps[0], max(steps[-1], steps[0] + 1)

    def x_of(step):
        return left + (step - first) / (last - first) * (right - left) if len(steps) > 1 else (left + right) / 2

    points = [(x_of(step), bottom - means[step] * (bottom - top)) for step in steps]
    if len(points) > 1:
        draw.line(points, fill=(30, 140, 80), width=2)
    for x, y in points:
        draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(30, 140, 80))
    if best is not None:
        draw.line((x_of(best), top, x_of(best), bottom), fill=(230, 120, 30), width=1)
        draw.text((min(x_of(best) + 4, right - 90), top + 2), f"best {best}", fill=(200, 90, 10))
    draw.text((left, bottom + 6), f"step {first}", fill=(60, 60, 60))
    draw.text((right - 70, bottom + 6), f"step {steps[-1]}", fill=(60, 60, 60))
    draw.text((left + 80, bottom + 6), "preview consistency", fill=(60, 60, 60))
    return np.asarray(image)


def watcher_for(settings, on_preview=None) -> PreviewWatcher:
    """The watcher of a run (`settings`: a TrainingSettings); inactive when the run does not preview.
    The previews have the dataset's grid: sd-scripts samples them at the composites' size."""
    from ..export.manifest import read_manifest

    records = list(read_manifest(Path(settings.dataset_dir)).values()) if settings.sample_every_n_steps else []
    rows, cols = (records[0].layout["rows"], records[0].layout["cols"]) if records else (2, 2)
    return PreviewWatcher(settings.run_dir, rows, cols, on_preview, active=bool(settings.sample_every_n_steps))


def preview_line(record: PreviewScore) -> str:
    """One line per scored preview, for logs and the command line (the picture stays in the run folder)."""
    flags = f" [{', '.join(record.flags)}]" if record.flags else ""
    head = f"preview step {record.step} prompt {record.prompt + 1}"
    return f"{head}: consistency {record.consistency:.2f}{flags} ({record.file})"
