"""The pipelined committer keeps the crash guarantees: an ingest killed while the next
batch is parsed ahead (or while a batch commits on the committer's thread) leaves
every batch it acknowledged, and of the others nothing, never part of one.

A batch is acknowledged here when another process can read its rows (they are
committed to the WAL at the database's level). Each line carries its number as a
field, so what survives is checked line by line."""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from engine import Database
from tests.conftest import CLEAN_ENV

BATCH = 1_000
T0 = 1_700_000_000_000_000_000


def _lines(first: int, last: int) -> bytes:
    return "".join(
        f"cpu,host=h{n % 7} n={n}i {T0 + n * 1_000_000_000}\n" for n in range(first, last)
    ).encode()


def _stored(data_dir: Path) -> list[int]:
    db = Database.open(data_dir / "k", "k", readonly=True)
    try:
        if "cpu" not in db.tables():
            return []
        return sorted(db.scan("cpu").column("n").to_pylist())
    finally:
        db.close()


def _ingest(data_dir: Path) -> subprocess.Popen[bytes]:
    argv = ["ingest", "lp", "k", "-", "--batch-rows", str(BATCH), "--flush-interval", "1h"]
    return subprocess.Popen(
        [sys.executable, "-m", "tsadmin", "--data-dir", str(data_dir), *argv],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CLEAN_ENV,
    )


def _until(condition: object, what: str, child: subprocess.Popen[bytes]) -> None:
    """Poll ``condition`` (a callable) until it holds; fail if the child ended first."""
    deadline = time.monotonic() + 60
    while not condition():  # type: ignore[operator]
        if child.poll() is not None:
            assert child.stderr is not None
            pytest.fail(f"the ingest ended before {what}: {child.stderr.read().decode()}")
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.02)


def _unread(pipe: object) -> int:
    """Bytes written to the pipe that its reader has not read yet."""
    raw = fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0\0\0\0")  # type: ignore[attr-defined]
    return int(struct.unpack("i", raw)[0])


def _kill(child: subprocess.Popen[bytes]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.stdin is not None
    child.stdin.close()
    assert child.stderr is not None
    child.stderr.close()


@pytest.mark.parametrize("level", ["sync", "flush"])
def test_a_kill_while_batches_are_parsed_ahead_keeps_whole_acknowledged_batches(  # type: ignore[no-untyped-def]
    data_dir: Path, cli, level: str
) -> None:
    assert cli("db", "create", "k", "--wal-level", level).code == 0
    # a batch and a half: the first commits, the next 500 lines are read and parsed
    # and wait for more input; the kill finds them parsed ahead, not committed
    first = _ingest(data_dir)
    assert first.stdin is not None
    first.stdin.write(_lines(0, BATCH + BATCH // 2))
    first.stdin.flush()
    _until(lambda: _unread(first.stdin) == 0, "it read its input", first)
    _until(lambda: len(_stored(data_dir)) >= BATCH, "the first batch was committed", first)
    _kill(first)
    assert _stored(data_dir) == list(range(BATCH)), "the half batch parsed ahead was stored"

    # four more batches at once, killed as soon as the first of them can be read: the
    # next is committing or parsed ahead; whole batches survive, in order
    second = _ingest(data_dir)
    assert second.stdin is not None
    second.stdin.write(_lines(BATCH, 5 * BATCH))
    second.stdin.flush()
    _until(lambda: len(_stored(data_dir)) >= 2 * BATCH, "a new batch was committed", second)
    _kill(second)
    stored = _stored(data_dir)
    assert len(stored) % BATCH == 0, f"{len(stored)} lines stored: part of a batch"
    assert stored == list(range(len(stored))), "a batch was stored without one before it"
