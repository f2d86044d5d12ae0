"""Soak: long-running writers with aggressive checkpoint and flush intervals never hang.

Two writers run for ``TSADMIN_SOAK_SECONDS`` (default 4; ``make soak``: 300) each,
under a slow fsync injected through the I/O layer: threads of the engine API committing while a
checkpointer and compactor loop, and a real ``tsadmin ingest lp`` fed endlessly
through a pipe with ``--checkpoint-interval 1s --flush-interval 0.01``. A watchdog
fails the test if progress stops for ``STALL`` seconds, after asking the writer
(SIGUSR1) to print every thread's stack, so a deadlock shows where it is.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CLEAN_ENV, ROOT, run_cli

SOAK_SECONDS = float(os.environ.get("TSADMIN_SOAK_SECONDS", "4"))
STALL = 20.0


def _stacks_and_fail(child: subprocess.Popen[bytes], what: str) -> None:
    child.send_signal(signal.SIGUSR1)
    time.sleep(1.0)
    child.kill()
    _, err = child.communicate(timeout=30)
    pytest.fail(f"{what}; the writer's threads:\n{err.decode(errors='replace')[-8000:]}")


@pytest.mark.parametrize("level", ["sync", "flush"])
def test_engine_writers_with_constant_checkpoints_never_hang(tmp_path: Path, level: str) -> None:
    data = tmp_path / "data"
    child = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "soak_child.py"),
            str(data),
            f"{SOAK_SECONDS}",
            level,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CLEAN_ENV,
    )
    last, last_change = -1, time.monotonic()
    while True:
        line = _readline(child, last_change + STALL)
        if line is None:
            _stacks_and_fail(child, f"no commit for {STALL:.0f} s after {last} commits")
        if not line:
            break
        kind, count = line.decode().split()
        if int(count) > last:
            last, last_change = int(count), time.monotonic()
        if kind == "done":
            break
    assert child.wait(timeout=60) == 0, child.stderr.read().decode() if child.stderr else ""
    assert last > 100, f"only {last} commits in {SOAK_SECONDS} s"


def _readline(child: subprocess.Popen[bytes], deadline: float) -> bytes | None:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], max(0.0, deadline - time.monotonic()))
    return child.stdout.readline() if ready else None


def test_piped_ingest_with_aggressive_intervals_never_hangs(data_dir: Path) -> None:
    assert (
        run_cli(
            data_dir,
            "db",
            "create",
            "m",
            "--wal-level",
            "flush",
            "--wal-fsync-period",
            "5",
            "--checkpoint-interval",
            "1s",
        ).code
        == 0
    )
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tsadmin",
            "--data-dir",
            str(data_dir),
            "ingest",
            "lp",
            "m",
            "-",
            "--flush-interval",
            "0.01",
            "--batch-rows",
            "50",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**CLEAN_ENV, "TSADMIN_FAULTS": "slowfsync=1"},
    )
    assert child.stdin is not None
    os.set_blocking(child.stdin.fileno(), False)
    deadline = time.monotonic() + SOAK_SECONDS
    pending, n, last_progress = b"", 0, time.monotonic()
    while time.monotonic() < deadline:
        if not pending:
            pending = "".join(
                f"cpu,host=h{(n + i) % 7} v={n + i}i {1_700_000_000_000_000_000 + (n + i) * 1000}\n"
                for i in range(50)
            ).encode()
            n += 50
        _, writable, _ = select.select([], [child.stdin], [], 1.0)
        if writable:
            try:
                sent = os.write(child.stdin.fileno(), pending)
            except BlockingIOError:
                sent = 0
            if sent:
                pending, last_progress = pending[sent:], time.monotonic()
            time.sleep(0.002)  # a steady producer, so --flush-interval commits small batches
        if time.monotonic() - last_progress > STALL:
            _stacks_and_fail(child, f"the ingest read nothing for {STALL:.0f} s after {n} lines")
    os.set_blocking(child.stdin.fileno(), True)
    child.stdin.write(pending)
    child.stdin.close()
    try:
        code = child.wait(timeout=120)
    except subprocess.TimeoutExpired:
        _stacks_and_fail(child, "the ingest did not finish after its input ended")
    assert code == 0, child.stderr.read().decode() if child.stderr else ""
    count = run_cli(data_dir, "--format", "json", "db", "stats", "m").json()
    assert count["segment_rows"] + count["wal_rows"] == n
