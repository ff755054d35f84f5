"""An export as a transaction: one build at a time per folder, and a crash leaves either
the previous dataset or the new one, never a mix.

    .mvic-build.lock          who builds here now (pid, host, start time); an OS file lock
                              that the kernel drops when that process ends, however it ends
    .mvic-build/journal.json  written first: a run started
    .mvic-build/staged/       every new file, written in full here first
    .mvic-build/commit.json   the commit point: the list of renames/moves that make the run
                              real, written atomically once everything is staged

Before the commit point nothing in the dataset has changed (a full disk or a kill there
leaves the previous dataset as it was); after it, the operations are replayed on the next
run if this one died half-way (each is idempotent). Every path in a plan stays inside
the dataset folder: a shared folder's `.mvic-build/` cannot make us touch anything else.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..files import atomic_write_text
from ..images import file_sha256
from ..paths import is_inside
from .folder import WRITABLE_DIRS, WRITABLE_FILES

logger = logging.getLogger(__name__)

LOCK_NAME = ".mvic-build.lock"
WORK_DIR = ".mvic-build"
STAGED = "staged"
JOURNAL = "journal.json"
COMMIT = "commit.json"


class DatasetBusy(RuntimeError):
    """Another build holds the folder's lock; the message names it and what to do."""


def real_subdir(folder: Path, name: str) -> Path:
    """`folder/name` as a real folder inside `folder` (created when missing); a link or a file
    there is refused, so nothing we write or move can land outside the dataset."""
    path = folder / name
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ValueError(
            f"{path} is {'a link' if path.is_symlink() else 'not a folder'}: the dataset saver only writes into "
            f"real folders inside the dataset folder; remove or rename it and run again"
        )
    path.mkdir(exist_ok=True)
    return path


# ---------------------------------------------------------------- the lock


def _lock_file(fd: int) -> bool:
    """Try to take the OS lock on `fd`; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: a byte-range lock, also dropped when the process ends
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass
class BuildLock:
    """`with BuildLock(folder, "python -m mvic build").held(wait_s=0):` -- one build per folder."""

    folder: Path
    tool: str
    _fd: int | None = None
    previous_owner: dict = field(default_factory=dict)  # a build that ended without cleaning up

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def acquire(self, wait_s: float = 0.0) -> None:
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            fd = self._open()
            if _lock_file(fd) and self._still_linked(fd):
                self._claim(fd)
                return
            owner = _read_owner(fd) or _owner_soon(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                raise DatasetBusy(_busy_message(self.folder, owner))
            time.sleep(0.2)

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as exc:
            if self.path.is_symlink():
                raise ValueError(f"{self.path} is a link: remove it (the lock file is always a plain file)") from None
            raise OSError(f"cannot create the build lock {self.path}: {exc.strerror}") from None

    def _still_linked(self, fd: int) -> bool:
        """A lock on a file another build just unlinked protects nothing: check it is still the one at the path."""
        try:
            return os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _claim(self, fd: int) -> None:
        self.previous_owner = _read_owner(fd)
        if self.previous_owner:
            logger.info(
                "%s: taking over the lock of a build that ended without releasing it: %s",
                self.folder,
                describe_owner(self.previous_owner),
            )
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "tool": self.tool}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        if os.name != "nt":  # unlink while still locked: the next build creates a fresh file
            self.path.unlink(missing_ok=True)
        else:
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "BuildLock":
        if self._fd is None:
            self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def held(self, wait_s: float = 0.0) -> "BuildLock":
        self.acquire(wait_s)
        return self


def _read_owner(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _owner_soon(fd: int, grace_s: float = 1.0) -> dict:
    """The holder writes who it is just after it takes the lock: a contender in between reads nothing yet."""
    deadline = time.monotonic() + grace_s
    owner = {}
    while not owner and time.monotonic() < deadline:
        time.sleep(0.05)
        owner = _read_owner(fd)
    return owner


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


def describe_owner(owner: dict) -> str:
    """'python -m mvic build (pid 12 on host h, started 2025-01-01T10:00:00)'."""
    if not owner:
        return "another build"
    return (
        f"{owner.get('tool', 'a build')} (pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, "
        f"started {owner.get('started', '?')})"
    )


def _busy_message(folder: Path, owner: dict) -> str:
    return (
        f"another build is writing into {folder}: {describe_owner(owner)}. Wait until it has finished and run again, "
        f"or choose another folder. The lock frees itself when that process ends (even if it is killed)."
    )


# ---------------------------------------------------------------- the journal, staging and commit


def _inside_plan(folder: Path, relative: str, staged_ok: bool = False) -> Path:
    """A plan's path, refused unless it names a file in one of the dataset's own places."""
    parts = Path(relative).parts
    allowed_top = parts and (
        (len(parts) == 1 and parts[0] in WRITABLE_FILES)
        or (len(parts) == 2 and parts[0] in WRITABLE_DIRS)
        or (staged_ok and len(parts) == 3 and parts[:2] == (WORK_DIR, STAGED))
    )
    path = folder / relative
    if not allowed_top or ".." in parts or Path(relative).is_absolute() or not is_inside(path.parent, folder):
        raise ValueError(f"{folder / WORK_DIR / COMMIT}: refusing a step that names {relative!r} (not a dataset file)")
    return path


@dataclass
class Transaction:
    """One run's staging area; `plan` collects the steps that `seal` commits and `apply` makes real."""

    folder: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    plan: list[list[str]] = field(default_factory=list)
    _count: int = 0

    @property
    def work(self) -> Path:
        return self.folder / WORK_DIR

    def begin(self) -> None:
        real_subdir(self.folder, WORK_DIR)
        real_subdir(self.work, STAGED)
        journal = {"run": self.run_id, "pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        atomic_write_text(self.work / JOURNAL, json.dumps(journal))

    def stage(self, target: str, data: bytes) -> None:
        """Write `data` in full under the staging folder; on commit it becomes `target`."""
        self._count += 1
        staged = f"{WORK_DIR}/{STAGED}/{self._count:06d}-{Path(target).name}"
        with open(self.folder / staged, "xb") as handle:  # umask's mode, like any new file
            handle.write(data)
        self.plan.append(["put", staged, target])

    def move(self, source: str, target: str) -> None:
        self.plan.append(["move", source, target])

    def delete_if_unchanged(self, relative: str, sha256: str) -> None:
        self.plan.append(["delete", relative, sha256])

    def seal(self) -> None:
        """The commit point: once commit.json exists, the run will happen, now or on the next start."""
        atomic_write_text(self.work / COMMIT, json.dumps({"run": self.run_id, "steps": self.plan}))

    def apply(self) -> None:
        apply_steps(self.folder, self.plan)
        shutil.rmtree(self.work)

    def abandon(self) -> None:
        """Before the commit point: the dataset never saw this run."""
        if not (self.work / COMMIT).exists():
            shutil.rmtree(self.work, ignore_errors=True)


def apply_steps(folder: Path, steps: list[list[str]]) -> None:
    """Replay a committed plan. Every step is idempotent: a step already done is skipped."""
    for step in steps:
        kind, first, second = (step + ["", ""])[:3]
        if kind == "put":
            source, target = _inside_plan(folder, first, staged_ok=True), _inside_plan(folder, second)
            if source.exists():
                os.replace(source, target)
        elif kind == "move":
            source, target = _inside_plan(folder, first), _inside_plan(folder, second)
            if os.path.lexists(source) and not os.path.lexists(target):
                os.replace(source, target)
        elif kind == "delete":
            path = _inside_plan(folder, first)
            if path.is_file() and not path.is_symlink() and file_sha256(path) == second:
                path.unlink()
        else:
            raise ValueError(f"{folder / WORK_DIR / COMMIT}: unknown step {kind!r}")


def _is_step(step) -> bool:
    return isinstance(step, list) and all(isinstance(part, str) for part in step)


def recover(folder: Path) -> str:
    """Finish or discard what a killed run left (call with the lock held). Returns a line for the report."""
    work = folder / WORK_DIR
    if not os.path.lexists(work):
        return ""
    real_subdir(folder, WORK_DIR)  # refuses a link
    try:
        journal = json.loads((work / JOURNAL).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        journal = {}
    started = journal.get("started", "an unknown time") if isinstance(journal, dict) else "an unknown time"
    try:
        plan = json.loads((work / COMMIT).read_text(encoding="utf-8"))
    except FileNotFoundError:
        plan = None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{work / COMMIT} is unreadable ({exc}); remove {work} and run again") from None
    if plan is None:
        shutil.rmtree(work)
        return f"discarded an unfinished build (started {started}); it had not changed the dataset"
    steps = plan.get("steps") if isinstance(plan, dict) else None
    if not isinstance(steps, list) or not all(_is_step(step) for step in steps):
        raise ValueError(f"{work / COMMIT} is malformed; remove {work} and run again")
    apply_steps(folder, steps)
    shutil.rmtree(work)
    return f"completed an interrupted build (started {started}) before this one"
