"""Run an sd-scripts training script in this process, and never outlive the parent.

Usage: python launch_sd_scripts.py --watch-parent PID [--report-to LOG] [--accelerate --num-processes N]
       [--fp8-matmul] [--fp8-t5] [--compile-blocks] -- SCRIPT ARGS...

The parent (ComfyUI) starts us in a new process group. A watchdog thread notices
when the parent is gone (we get re-parented, or its pid disappears) and kills the
whole group, data-loader workers and accelerate ranks included, so no orphan keeps
holding the GPU. It kills first and reports afterwards, and the report can never
stop the kill: with the parent gone, our stdout/stderr is a pipe nobody reads, and
writing to it raises (EPIPE). The report goes to the run's log file instead.
Under accelerate every rank runs this launcher too: torch's elastic agent starts
ranks in sessions of their own, out of reach of a process-group kill, so each rank watches us.
--fp8-matmul / --fp8-t5 / --compile-blocks install fp8_hooks.py's and compile_blocks.py's hooks (in every
rank) before the script runs. Every run reports each optimizer step's own loss as a line
`MVIC_LOSS <step> <loss>` (sd-scripts' progress bar shows only the running average).
"""

import argparse
import os
import runpy
import signal
import sys
import threading
import time


def parent_alive(pid: int) -> bool:
    if os.name != "nt" and os.getppid() != pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


_ENDING = threading.Lock()


def watch(pid: int, report_to: str) -> None:
    while parent_alive(pid):
        time.sleep(0.5)
    end_orphaned_run(pid, report_to)


def end_orphaned_run(pid: int, report_to: str) -> None:
    """Kill the rest of the group, say why, kill ourselves. Called by the watchdog, or first by a
    write that found the parent's pipe dead; the other caller waits for the kill."""
    if not _ENDING.acquire(blocking=False):
        while True:
            time.sleep(1)
    if os.name == "nt":
        os._exit(1)
    killed = kill_rest_of_group()
    report(
        f"[mvic] parent process {pid} is gone: killed {killed} other process(es) of the training; stopping", report_to
    )
    os.killpg(os.getpgrp(), signal.SIGKILL)


class OrphanAwareStream:
    """sys.stdout / sys.stderr. When the parent dies, sd-scripts' next write to the parent's pipe raises
    BrokenPipeError and would end this process (leaving a data-loader worker, saying nothing) before the
    watchdog's next look: such a write ends the run the watchdog's way instead."""

    def __init__(self, stream, parent_pid: int, report_to: str):
        self._stream, self._parent_pid, self._report_to = stream, parent_pid, report_to

    def _guard(self, operation, *args):
        try:
            return operation(*args)
        except BrokenPipeError:
            if not parent_alive(self._parent_pid):
                end_orphaned_run(self._parent_pid, self._report_to)
            raise

    def write(self, text):
        return self._guard(self._stream.write, text)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def group_members(pgid: int) -> list[int] | None:
    """Pids of the live (not zombie) processes in a process group (Linux /proc); None where it can't be listed."""
    if not os.path.isdir("/proc"):
        return None
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                members.append(int(entry))
    return members


def kill_rest_of_group() -> int:
    """SIGKILL every process of our group but this one (repeated while any is left: a dying
    trainer may still fork a worker). Where the group can't be listed, the whole group goes,
    this process included, and nothing is reported."""
    me, pgid = os.getpid(), os.getpgrp()
    killed = set()
    for _ in range(50):
        members = group_members(pgid)
        if members is None:
            os.killpg(pgid, signal.SIGKILL)
            os._exit(1)
        others = [p for p in members if p != me]
        if not others:
            break
        for other in others:
            try:
                os.kill(other, signal.SIGKILL)
                killed.add(other)
            except OSError:
                pass
        time.sleep(0.02)
    return len(killed)


def report(message: str, log_path: str) -> None:
    """Best effort, after the kill: the log file, then stderr (a dead pipe raises; ignored)."""
    line = (message + "\n").encode("utf-8", "replace")
    if log_path:
        try:
            with open(log_path, "ab") as log:
                log.write(line)
        except OSError:
            pass
    try:
        os.write(2, line)
    except OSError:
        pass


def skip_model_hashing() -> None:
    """sd-scripts hashes the whole base model for its metadata even with --no_metadata,
    which then drops that metadata: 20-23 s per start for a 24 GB FLUX (measured on an
    H200). Hash nothing when nothing will be written."""
    from library import train_util

    train_util.model_hash = lambda filename: "skipped (--no_metadata)"
    train_util.calculate_sha256 = lambda filename: "skipped (--no_metadata)"


def report_step_losses() -> None:
    """Print `MVIC_LOSS <step> <loss>` once per optimizer step, from the main process: the mean loss of
    the step's micro-batches, as sd-scripts hands it to its loss recorder. The training loop's recorder
    is the first LossRecorder it makes (the validation ones come after it)."""
    try:
        from accelerate.state import GradientState
        from library import train_util

        recorder_class = train_util.LossRecorder
    except (ImportError, AttributeError):  # another trainer: its progress bar alone gives the steps
        return
    original_init, original_add = recorder_class.__init__, recorder_class.add
    state = {"training": None, "step": 0, "pending": []}
    main_process = os.environ.get("RANK", "0") in ("", "0")

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        if state["training"] is None:
            state["training"] = self

    def add(self, *args, **kwargs):
        original_add(self, *args, **kwargs)
        if self is not state["training"]:
            return
        state["pending"].append(float(kwargs["loss"] if "loss" in kwargs else args[-1]))
        if GradientState().sync_gradients:  # this micro-batch ended an optimizer step
            state["step"] += 1
            loss = sum(state["pending"]) / len(state["pending"])
            state["pending"] = []
            if main_process:
                # Own line: tqdm's redraws (stderr, same pipe) end without a newline.
                print(f"\nMVIC_LOSS {state['step']} {loss!r}", flush=True)

    recorder_class.__init__, recorder_class.add = init, add
    print("MVIC_LOSS_HOOK on", flush=True)


def main() -> None:
    if "--" not in sys.argv:
        sys.exit(
            "usage: launch_sd_scripts.py --watch-parent PID [--report-to LOG] [--accelerate --num-processes N] "
            "[--fp8-matmul] [--fp8-t5] [--compile-blocks] -- SCRIPT ARGS..."
        )
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--watch-parent", type=int, required=True)
    parser.add_argument("--report-to", default="", help="file the watchdog appends its report to")
    parser.add_argument("--accelerate", action="store_true")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--fp8-matmul", action="store_true")
    parser.add_argument("--fp8-t5", action="store_true")
    parser.add_argument("--compile-blocks", action="store_true")
    ours = parser.parse_args(sys.argv[1:split])
    script, *script_args = sys.argv[split + 1 :]
    threading.Thread(target=watch, args=(ours.watch_parent, ours.report_to), daemon=True).start()
    sys.stdout = OrphanAwareStream(sys.stdout, ours.watch_parent, ours.report_to)
    sys.stderr = OrphanAwareStream(sys.stderr, ours.watch_parent, ours.report_to)

    checkout = os.path.dirname(os.path.abspath(script))
    os.chdir(checkout)
    sys.path.insert(0, checkout)
    if ours.accelerate:
        hooks = [
            flag
            for flag, on in (
                ("--fp8-matmul", ours.fp8_matmul),
                ("--fp8-t5", ours.fp8_t5),
                ("--compile-blocks", ours.compile_blocks),
            )
            if on
        ]
        report = ["--report-to", ours.report_to] if ours.report_to else []
        rank = [
            os.path.abspath(__file__),
            "--watch-parent",
            str(os.getpid()),
            *report,
            *hooks,
            "--",
            script,
            *script_args,
        ]
        sys.argv = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(ours.num_processes), *rank]
        from accelerate.commands.accelerate_cli import main as accelerate_main

        accelerate_main()
        return
    if "--no_metadata" in script_args:
        skip_model_hashing()
    install_hooks(ours.fp8_matmul, ours.fp8_t5, ours.compile_blocks)
    use_fp32_compute_on_a_cpu_without_bf16()
    report_step_losses()
    sys.argv = [script, *script_args]
    runpy.run_path(script, run_name="__main__")


def use_fp32_compute_on_a_cpu_without_bf16() -> None:
    """CPU-only runs (the tests' tiny models) on AVX2-only CPUs: see cpu_precision.py."""
    import cpu_precision

    if cpu_precision.needs_fp32_compute():
        cpu_precision.install()
        print("[mvic] CPU without native bf16: linears compute in fp32", flush=True)


def install_hooks(fp8_matmul: bool, fp8_t5: bool, compile_blocks: bool) -> None:
    """Modules beside this file; the compile hook goes last so that it sees the FP8 linears."""
    if fp8_matmul or fp8_t5:
        import fp8_hooks

        if fp8_matmul:
            fp8_hooks.install_fp8_matmul()
        if fp8_t5:
            fp8_hooks.install_fp8_t5()
    if compile_blocks:
        import compile_blocks as compiler

        compiler.install_compile_blocks()


if __name__ == "__main__":
    main()
