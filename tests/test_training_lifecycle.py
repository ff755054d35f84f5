"""The training child never outlives its parent (issue 10): the launcher's watchdog, with the
child's stdout/stderr a pipe whose reader (the parent) was SIGKILLed.

Here the launcher runs a script that starts a worker and then stays silent, so nothing but the
watchdog can end it (the real sd-scripts run is in test_training_sdscripts.py). On the old
launcher the watchdog printed to the dead pipe first, died of EPIPE, and both stayed alive.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from packload import ROOT

SILENT_TRAINER = textwrap.dedent(
    """
    import pathlib, subprocess, sys, time
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pathlib.Path({ready!r}).write_text(str(worker.pid))
    time.sleep(600)
    """
)
PARENT = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {tests!r})
    from packload import mvic_module
    from pathlib import Path
    modules = ("training.arguments", "training.environment", "training.process")
    arguments, environment, process = (mvic_module(m) for m in modules)
    checkout, log = Path({checkout!r}), Path({log!r})
    command = arguments.launch_command(sys.executable, checkout, Path({launcher!r}), os.getpid(), [], (), log)
    process.run_child(command, log, environment.child_env(), checkout)
    """
)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_sigkill_of_the_parent_ends_launcher_and_worker_within_5_s(tmp_path):
    checkout, ready, log = tmp_path / "checkout", tmp_path / "worker.pid", tmp_path / "train.log"
    checkout.mkdir()
    (checkout / "flux_train_network.py").write_text(SILENT_TRAINER.format(ready=str(ready)))
    code = PARENT.format(
        tests=str(ROOT / "tests"),
        checkout=str(checkout),
        log=str(log),
        launcher=str(ROOT / "trainers" / "launch_sd_scripts.py"),
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ready.exists(), log.read_text(errors="replace") if log.exists() else "no log"
    (launcher,) = children(parent.pid)
    worker = int(ready.read_text())
    assert os.getpgid(worker) == os.getpgid(launcher) == launcher  # one process group of the run
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    killed_at = time.monotonic()
    while (alive(launcher) or alive(worker)) and time.monotonic() - killed_at < 5:
        time.sleep(0.1)
    try:
        assert not alive(launcher) and not alive(worker), "the run outlived its parent by 5 s"
    finally:
        for pid in (worker, launcher):  # only ours, by id
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    report = log.read_text(errors="replace")
    assert f"[mvic] parent process {parent.pid} is gone: killed 1 other process(es) of the training; stopping" in report
