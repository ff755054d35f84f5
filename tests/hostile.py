"""Tools for hostile-workflow tests: a workflow arrives through the real ComfyUI's /prompt,
and afterwards we check what it could not do.

- `FileScan`: every file under some roots before and after (what appeared, changed, vanished).
- `Listener`: a loopback HTTP server that records every request it gets (it must get none).
- `sentinel_checkout`: a folder that looks like an sd-scripts checkout whose entry script only
  writes a sentinel file: if that file ever appears, a workflow chose the program.
- `refusal`: submit a prompt and return ComfyUI's error text (validation or execution).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class FileScan:
    """Snapshot of (size, mtime_ns, inode) for every file under `roots` (symlinks not followed)."""

    roots: list[Path]
    files: dict[Path, tuple[int, int, int]] = field(default_factory=dict)

    def __post_init__(self):
        self.files = self._scan()

    def _scan(self) -> dict[Path, tuple[int, int, int]]:
        found = {}
        for root in self.roots:
            for path in Path(root).rglob("*"):
                if path.is_file() and not path.is_symlink():
                    st = path.stat()
                    found[path] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return found

    def changes(self, ignore: list[Path] = ()) -> dict[str, list[Path]]:
        """{'added', 'changed', 'removed'}: files outside the `ignore` folders only."""
        now = self._scan()

        def keep(path: Path) -> bool:
            return not any(path == folder or Path(folder) in path.parents for folder in ignore)

        return {
            "added": sorted(p for p in now if p not in self.files and keep(p)),
            "changed": sorted(p for p in now if p in self.files and now[p] != self.files[p] and keep(p)),
            "removed": sorted(p for p in self.files if p not in now and keep(p)),
        }


class Listener:
    """`with Listener() as l:` -> l.url ('http://127.0.0.1:PORT'); l.requests lists (method, path, headers)."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict]] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                listener.requests.append((self.command, self.path, dict(self.headers)))
                self.send_response(500)
                self.end_headers()

            do_GET = do_POST = do_PUT = _record

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "Listener":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def sentinel_checkout(folder: Path) -> Path:
    """A fake sd-scripts checkout (and venv Python) whose programs write `folder/SENTINEL` when run.
    Returns the sentinel path: it must never exist after a hostile workflow ran."""
    sentinel = folder / "SENTINEL"
    script = f"import pathlib; pathlib.Path({str(sentinel)!r}).write_text('ran')\n"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("flux_train_network.py", "train_network.py"):
        (folder / name).write_text(script)
    (folder / "library").mkdir(exist_ok=True)
    (folder / "library" / "train_util.py").write_text(script)
    python = folder / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(f"#!/bin/sh\necho ran > {sentinel}\n")
    python.chmod(0o755)
    return sentinel


def refusal(server, prompt: dict, timeout: float = 300.0) -> str:
    """Submit an API-format prompt that must fail; return ComfyUI's error text (validation or
    execution). Fails the test if the prompt ran through."""
    import urllib.error
    import urllib.request

    body = json.dumps({"prompt": prompt, "client_id": uuid.uuid4().hex}).encode()
    request = urllib.request.Request(server.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
    try:
        with server.open(request, timeout=60) as response:
            queued = json.loads(response.read())
    except urllib.error.HTTPError as exc:  # validation errors come back as 400 with node_errors
        return exc.read().decode(errors="replace")
    if queued.get("node_errors"):
        return json.dumps(queued["node_errors"])
    prompt_id = queued["prompt_id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = server.get(f"/history/{prompt_id}")
        if prompt_id in history:
            status = history[prompt_id].get("status", {})
            if status.get("status_str") == "error":
                return json.dumps([m for m in status.get("messages", []) if m[0] == "execution_error"])
            raise AssertionError(f"the hostile prompt ran through: {json.dumps(history[prompt_id])[:2000]}")
        time.sleep(0.25)
    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")
