"""Timestamp console output line by line (tqdm's `\r` redraws count as lines).

    CMD | python tstamp.py T0 > out.ts              # stdin
    python tstamp.py T0 --follow FILE > out.ts      # follow a growing file until SIGTERM/SIGINT

T0: epoch seconds of the launch (`date +%s.%N`). Each output line: `<seconds since T0>\t<text>`.
"""

import os
import re
import signal
import sys
import time

t0 = float(sys.argv[1])
follow = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--follow" else None
stop = False


def _stop(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, _stop)
signal.signal(signal.SIGINT, _stop)
out = sys.stdout
pending = ""


def emit(data: bytes) -> None:
    global pending
    parts = re.split(r"\r\n|\r|\n", pending + data.decode("utf-8", "replace"))
    pending = parts.pop()
    now = time.time() - t0
    for part in parts:
        if part.strip():
            out.write(f"{now:.3f}\t{part}\n")
    out.flush()


if follow is None:
    fd = sys.stdin.fileno()
    while chunk := os.read(fd, 65536):
        emit(chunk)
else:
    handle = None
    while not stop:
        if handle is None and os.path.exists(follow):
            handle = open(follow, "rb")
        chunk = handle.read(65536) if handle else b""
        if chunk:
            emit(chunk)
        else:
            time.sleep(0.05)
    if handle:
        emit(handle.read())
emit(b"\n")
