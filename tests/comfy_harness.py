"""A real ComfyUI for integration tests: started headless on a free loopback port,
with this pack in a private custom_nodes folder and an extra model-paths file.

Configured by COMFYUI_DIR (a ComfyUI checkout) and COMFYUI_PYTHON (an interpreter
with ComfyUI's requirements; default: COMFYUI_DIR/../venv-comfy/bin/python or the
current one). Tests that need it skip with a reason when COMFYUI_DIR is unset.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from packload import PACK_NAME, ROOT


def comfyui_paths() -> tuple[Path, str] | None:
    directory = os.environ.get("COMFYUI_DIR", "").strip()
    if not directory:
        return None
    comfy_dir = Path(directory)
    python = os.environ.get("COMFYUI_PYTHON", "").strip()
    if not python:
        candidate = comfy_dir.parent / "venv-comfy" / "bin" / "python"
        python = str(candidate) if candidate.exists() else sys.executable
    return comfy_dir, python


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by SIGKILL (an OOM kill on a full machine
    would otherwise leave a ComfyUI server running). Linux only; elsewhere a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyServer:
    # Requests sent to any real ComfyUI from this process: conftest counts a test whose setup or call sent
    # one under the real-ComfyUI tier, whatever fixture started the server.
    requests_sent = 0

    def __init__(
        self,
        comfy_dir: Path,
        python: str,
        base_dir: Path,
        model_dirs: dict[str, Path] | None = None,
        flags: list[str] = (),
        env: dict[str, str] | None = None,
    ):
        """`flags`: extra ComfyUI command-line flags; `env`: extra environment for its process."""
        self.comfy_dir, self.python, self.base_dir = comfy_dir, python, base_dir
        self.flags, self.env = list(flags), dict(env or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for sub in ("custom_nodes", "input", "output", "user", "models"):
            (base_dir / sub).mkdir(parents=True, exist_ok=True)
        link = base_dir / "custom_nodes" / PACK_NAME
        if not link.exists():
            link.symlink_to(ROOT, target_is_directory=True)
        self.extra_paths = base_dir / "extra_model_paths.yaml"
        lines = ["mvic_tests:", f"  base_path: {base_dir / 'models'}"]
        for kind, folder in (model_dirs or {}).items():
            lines.append(f"  {kind}: {folder}")
        self.extra_paths.write_text("\n".join(lines) + "\n")
        self.log_path = base_dir / "comfyui.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "ComfyServer":
        command = [
            self.python,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--base-directory",
            str(self.base_dir),
            "--extra-model-paths-config",
            str(self.extra_paths),
            "--database-url",
            "sqlite:///:memory:",
            "--disable-auto-launch",
            "--disable-api-nodes",
            *self.flags,
        ]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command,
            cwd=self.comfy_dir,
            stdout=open(self.log_path, "ab"),
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log()}")
            try:
                self.get("/system_stats")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def open(self, request: "str | urllib.request.Request", timeout: float):
        """urlopen a path on this server (or a Request for it), counted in `requests_sent`."""
        ComfyServer.requests_sent += 1
        return urllib.request.urlopen(self.url + request if isinstance(request, str) else request, timeout=timeout)

    def get(self, path: str):
        with self.open(path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, payload: dict):
        request = urllib.request.Request(
            self.url + path, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with self.open(request, timeout=60) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"POST {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from None

    def run_prompt(self, prompt: dict, timeout: float = 600.0) -> dict:
        """Submit an API-format prompt; return its /history entry once it finished.
        Validation errors and execution errors raise AssertionError with ComfyUI's words."""
        queued = self.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        if queued.get("node_errors"):
            raise AssertionError(f"/prompt validation errors: {json.dumps(queued['node_errors'], indent=1)}")
        prompt_id = queued["prompt_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                history = self.get(f"/history/{prompt_id}")
            except (TimeoutError, urllib.error.URLError, ConnectionError):
                # On a loaded machine one poll can go unanswered for a while: only the deadline fails the test.
                if self.process.poll() is not None:
                    raise AssertionError(f"ComfyUI died while running the prompt:\n{self.log()}") from None
                time.sleep(1)
                continue
            if prompt_id in history:
                entry = history[prompt_id]
                status = entry.get("status", {})
                if status.get("status_str") == "error" or not status.get("completed", True):
                    messages = [m for m in status.get("messages", []) if m[0] == "execution_error"]
                    raise AssertionError(f"prompt failed: {json.dumps(messages, indent=1)[:4000]}\n{self.log()}")
                return entry
            if self.process.poll() is not None:
                raise AssertionError(f"ComfyUI died while running the prompt:\n{self.log()}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s:\n{self.log()}")


TEXT_FRAME = 3  # ComfyUI protocol.BinaryEventTypes.TEXT: a node's progress text


def receive_until_done(socket, prompt_id: str, timeout: float) -> tuple[list[bytes], list[dict]]:
    """What a client's websocket got while the prompt ran: binary frames (4-byte event type first) and
    JSON events, until ComfyUI says the prompt finished. An execution error raises with its data."""
    frames, events, deadline = [], [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = socket.recv(timeout=5)
        except TimeoutError:
            continue
        if isinstance(message, bytes):
            frames.append(message)
            continue
        event = json.loads(message)
        events.append(event)
        data = event.get("data", {})
        if event["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
            return frames, events
        if event["type"] == "execution_error":
            raise AssertionError(json.dumps(data)[:3000])
    raise TimeoutError("the prompt did not finish")


def frame_type(frame: bytes) -> int:
    return int.from_bytes(frame[:4], "big")


def progress_texts(frames: list[bytes]) -> list[tuple[str, str]]:
    """(node id, text) of the progress-text frames (4-byte type, 4-byte id length, id, text)."""
    texts = []
    for frame in frames:
        if frame_type(frame) == TEXT_FRAME:
            length = int.from_bytes(frame[4:8], "big")
            texts.append((frame[8 : 8 + length].decode(), frame[8 + length :].decode()))
    return texts
