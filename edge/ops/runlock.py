"""One `classroom-edge run` per data dir: a second one would record into the live
lesson's files and hold its own copy of every store."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "run.lock"


class AlreadyRunning(RuntimeError):
    """Another process holds the data dir; the message says which and what to do."""


class RunLock:
    """`acquire()` before anything touches the data dir; held until `release()` or the
    process ends (kill -9 included: the kernel drops the lock)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"classroom-edge: another 'classroom-edge run' (pid {holder}) already uses "
                f"{self.path.parent}; stop it first (systemctl stop classroom-edge)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None
