"""Run the training child: its own process group, output streamed to a log and parsed,
stoppable on request (the whole tree, within seconds), never left orphaned."""

from __future__ import annotations

import codecs
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .progress import (
    STEP_LOSS_HOOK,
    PhaseProgress,
    PhaseReader,
    StepProgress,
    args_rejection,
    is_no_data,
    is_out_of_memory,
    parse_step,
    parse_step_loss,
    split_console,
)


class TrainingInterrupted(RuntimeError):
    pass


@dataclass
class ChildResult:
    returncode: int
    log_path: Path
    out_of_memory: bool = False
    no_data: bool = False
    args_rejected: str = ""  # sd-scripts' parser refused its arguments: its message
    progress: list[StepProgress] = field(default_factory=list)
    step_losses: dict[int, float] = field(default_factory=dict)  # step of this launch -> that step's loss
    loss_hook: bool = False  # the launcher reports each step's loss (else the steps come from tqdm, without loss)
    phases: PhaseReader = field(default_factory=PhaseReader)
    last_bar: StepProgress | None = None  # sd-scripts' progress bar as last drawn

    def log_tail(self, chars: int = 3000) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return text.replace("\r", "\n")[-chars:]


def _popen_kwargs() -> dict:
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def stop_process_tree(process: subprocess.Popen, grace: float = 3.0) -> None:
    """Terminate the child's whole group, then kill what is left after `grace` seconds."""
    if process.poll() is not None and os.name == "nt":
        return
    if os.name == "nt":
        import psutil

        try:
            parent = psutil.Process(process.pid)
            family = parent.children(recursive=True) + [parent]
        except psutil.NoSuchProcess:
            return
        for proc in family:
            proc.terminate()
        _, alive = psutil.wait_procs(family, timeout=grace)
        for proc in alive:
            proc.kill()
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(process.pid):
        process.poll()
        time.sleep(0.1)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def run_child(
    command: list[str],
    log_path: Path,
    env: dict[str, str],
    cwd: Path,
    on_progress: Callable[[StepProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_phase: Callable[[PhaseProgress], None] | None = None,
) -> ChildResult:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    result = ChildResult(returncode=-1, log_path=log_path)
    with open(log_path, "ab") as log:
        log.write(f"\n[mvic] {' '.join(command)}\n".encode())
        log.flush()  # visible at once, not with the child's first output
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            **_popen_kwargs(),
        )

        def pump():
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            pending = ""
            while (
                chunk := process.stdout.read1(65536) if hasattr(process.stdout, "read1") else process.stdout.read(4096)
            ):
                log.write(chunk)
                log.flush()
                lines, pending = split_console(pending + decoder.decode(chunk))
                for line in lines:
                    _inspect(line, result, on_progress, on_phase)
            for line in split_console(pending + decoder.decode(b"", final=True) + "\n")[0]:
                _inspect(line, result, on_progress, on_phase)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            while process.poll() is None:
                if should_stop and should_stop():
                    stop_process_tree(process)
                    reader.join(5)
                    raise TrainingInterrupted(f"training stopped on request; log: {log_path}")
                time.sleep(0.2)
        except BaseException:
            if process.poll() is None:
                stop_process_tree(process)
            raise
        reader.join(30)
        # The launcher's group may still hold workers if the script exited oddly.
        if os.name != "nt" and _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
    result.returncode = process.returncode
    return result


def _inspect(line: str, result: ChildResult, on_progress, on_phase=None) -> None:
    step_loss = parse_step_loss(line)  # first: it may share a line with a tqdm redraw
    step = parse_step(line)
    if step is not None:
        result.last_bar = step
        if not result.loss_hook:  # without the launcher's loss lines the bar gives the steps (its loss is an average)
            _report(replace(step, loss=None), result, on_progress)
    if step_loss is not None:
        number, loss = step_loss
        result.step_losses[number] = loss
        bar = result.last_bar
        _report(
            StepProgress(number, bar.total if bar else number, loss, bar.seconds_per_step if bar else None),
            result,
            on_progress,
        )
    if step is not None or step_loss is not None:
        return
    if line.strip() == STEP_LOSS_HOOK:
        result.loss_hook = True
    elif is_out_of_memory(line):
        result.out_of_memory = True
    elif is_no_data(line):
        result.no_data = True
    elif args_rejection(line) and not result.args_rejected:
        result.args_rejected = args_rejection(line)
    else:
        phase = result.phases.read(line)
        if phase is not None and on_phase:
            on_phase(phase)


def _report(step: StepProgress, result: ChildResult, on_progress) -> None:
    """Once per step (tqdm redraws the same step several times)."""
    if result.progress and result.progress[-1].step == step.step:
        return
    result.progress.append(step)
    if on_progress:
        on_progress(step)
