"""The writer lock: one writing process per database, held with ``flock``.

File ``<database>/LOCK`` holds the PID of the holder as text, for messages
only; the lock itself is the kernel's, so it disappears with the process
(a SIGKILL included) and never needs cleaning up.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import Locked, StorageError

FILENAME = "LOCK"


class WriterLock:
    def __init__(self, db_dir: Path, database: str) -> None:
        self.path = db_dir / FILENAME
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(
                f"cannot take the writer lock of database {database}: "
                f"{exc.strerror or exc} ({self.path})",
                hint="writes need a writable data directory; read-only commands work",
            ) from None
        if not _lock_exclusive(self._fd):
            holder = _read_pid(self._fd)
            os.close(self._fd)
            who = f"PID {holder}" if holder else "another process"
            raise Locked(
                f"database {database} is locked by {who}",
                hint="wait for that writer to finish; read-only commands work meanwhile",
                pid=holder,
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


# A reader probing the lock holds it shared for an instant; a writer retries this long
# before it decides another writer holds it.
PROBE_GRACE_SECONDS = 0.25


def _lock_exclusive(fd: int) -> bool:
    deadline = time.monotonic() + PROBE_GRACE_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def holder_pid(db_dir: Path) -> int | None:
    """The PID holding the lock now, or ``None`` if nobody does."""
    path = db_dir / FILENAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (a leftover of a dead one may be cleared)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


@contextmanager
def held_exclusively(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (a directory will do) while the block runs,
    waiting for it: for the short read-modify-write of a small file by processes that
    may run at once (two backups recording themselves), never around slow work."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # the lock goes with the descriptor
