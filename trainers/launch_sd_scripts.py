"""Run an sd-scripts training script in this process, and never outlive the parent.

Usage: python launch_sd_scripts.py --watch-parent PID [--accelerate --num-processes N] [--fp8-matmul] [--fp8-t5]
       [--compile-blocks] -- SCRIPT ARGS...

The parent (ComfyUI) starts us in a new process group. A watchdog thread notices
when the parent is gone (we get re-parented, or its pid disappears) and kills the
whole group, data-loader workers and accelerate ranks included, so no orphan keeps
holding the GPU. Under accelerate every rank runs this launcher too: torch's elastic agent starts
ranks in sessions of their own, out of reach of a process-group kill, so each rank watches us.
--fp8-matmul / --fp8-t5 / --compile-blocks install fp8_hooks.py's and compile_blocks.py's hooks (in every
rank) before the script runs.
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


def watch(pid: int) -> None:
    while parent_alive(pid):
        time.sleep(0.5)
    try:
        print("[mvic] parent process is gone: stopping training", file=sys.stderr, flush=True)
    except OSError:  # the parent's end of our output pipe went with it: kill all the same
        pass
    if os.name == "nt":
        os._exit(1)
    os.killpg(os.getpgrp(), signal.SIGKILL)


def skip_model_hashing() -> None:
    """sd-scripts hashes the whole base model for its metadata even with --no_metadata,
    which then drops that metadata: 20-23 s per start for a 24 GB FLUX (measured on an
    H200). Hash nothing when nothing will be written."""
    from library import train_util

    train_util.model_hash = lambda filename: "skipped (--no_metadata)"
    train_util.calculate_sha256 = lambda filename: "skipped (--no_metadata)"


def main() -> None:
    if "--" not in sys.argv:
        sys.exit("usage: launch_sd_scripts.py --watch-parent PID [--accelerate --num-processes N] -- SCRIPT ARGS...")
    split = sys.argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--watch-parent", type=int, required=True)
    parser.add_argument("--accelerate", action="store_true")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--fp8-matmul", action="store_true")
    parser.add_argument("--fp8-t5", action="store_true")
    parser.add_argument("--compile-blocks", action="store_true")
    ours = parser.parse_args(sys.argv[1:split])
    script, *script_args = sys.argv[split + 1 :]
    threading.Thread(target=watch, args=(ours.watch_parent,), daemon=True).start()

    checkout = os.path.dirname(os.path.abspath(script))
    os.chdir(checkout)
    sys.path.insert(0, checkout)
    if ours.accelerate:
        hooks = [flag for flag, on in (("--fp8-matmul", ours.fp8_matmul), ("--fp8-t5", ours.fp8_t5),
                                       ("--compile-blocks", ours.compile_blocks)) if on]
        rank = [os.path.abspath(__file__), "--watch-parent", str(os.getpid()), *hooks, "--", script, *script_args]
        sys.argv = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(ours.num_processes), *rank]
        from accelerate.commands.accelerate_cli import main as accelerate_main

        accelerate_main()
        return
    if "--no_metadata" in script_args:
        skip_model_hashing()
    install_hooks(ours.fp8_matmul, ours.fp8_t5, ours.compile_blocks)
    sys.argv = [script, *script_args]
    runpy.run_path(script, run_name="__main__")


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
