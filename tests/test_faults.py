"""Power loss, disk full, and two writers: faults injected through the real I/O layer."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pyarrow as pa
import pytest

from engine import (
    Batch,
    Corruption,
    Database,
    DiskFull,
    EngineError,
    Locked,
    NotFound,
    StorageError,
)
from engine.harness import workload
from engine.harness.workload import Acks, verify
from engine.io.fileio import IO, simulate_power_loss
from engine.settings import WalLevel
from tests.conftest import kill_after, new_db, start_writer, wait_ready

ROWS = 10


def run_then_lose_power(
    db_dir: Path, name: str, journal: Path, seconds: float, *extra: str
) -> Acks:
    child = start_writer(
        db_dir,
        name,
        "--batches",
        "100000",
        "--rows",
        str(ROWS),
        *extra,
        faults=f"journal={journal}",
    )
    out = "".join(wait_ready(child)) + kill_after(child, seconds)
    simulate_power_loss(journal, db_dir)
    return Acks.parse(out)


def test_power_loss_under_sync_loses_nothing_acknowledged(data_dir: Path, tmp_path: Path) -> None:
    for trial, seconds in enumerate([0.2, 0.5, 0.9]):
        name = f"p{trial}"
        db_dir = new_db(data_dir, name, wal_level="sync")
        acks = run_then_lose_power(
            db_dir, name, tmp_path / f"j{trial}", seconds, "--checkpoint-every", "9"
        )
        verdict = verify(db_dir, name, acks, ROWS, WalLevel.SYNC)
        assert verdict.ok, verdict


def test_power_loss_drops_unsynced_bytes_under_flush(data_dir: Path, tmp_path: Path) -> None:
    """flush promises all but the last fsync period; what survives is whole batches."""
    db_dir = new_db(data_dir, "f", wal_level="flush", wal_fsync_period="5000")
    acks = run_then_lose_power(db_dir, "f", tmp_path / "j", 0.6)
    verdict = verify(db_dir, "f", acks, ROWS, WalLevel.FLUSH)
    assert not verdict.partial and not verdict.wrong, verdict
    assert verdict.lost, (
        "with a 5 s fsync period, a power loss after 0.6 s must lose the unsynced tail"
    )


def test_planted_missing_fsync_is_caught(data_dir: Path, tmp_path: Path) -> None:
    """With fsync turned off under sync (a planted bug), power loss loses acknowledged data,
    and the check says so: the simulation is able to fail."""
    db_dir = new_db(data_dir, "bug", wal_level="sync")
    journal = tmp_path / "j"
    child = start_writer(
        db_dir,
        "bug",
        "--batches",
        "100000",
        "--rows",
        str(ROWS),
        faults=f"journal={journal};nofsync",
    )
    out = "".join(wait_ready(child)) + kill_after(child, 0.5)
    acks = Acks.parse(out)
    assert acks.acked, "nothing was acknowledged before the kill: the test proves nothing"
    simulate_power_loss(journal, db_dir)
    try:
        verdict = verify(db_dir, "bug", acks, ROWS, WalLevel.SYNC)
    except EngineError as exc:  # the database may not even open any more: also a loss
        assert isinstance(exc, Corruption | NotFound | StorageError), exc
        return
    assert not verdict.ok and verdict.lost


def test_second_writer_is_refused_and_first_is_unharmed(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    db_dir = new_db(data_dir, "l")
    child = start_writer(db_dir, "l", "--batches", "2000", "--rows", str(ROWS))
    wait_ready(child)
    refused = cli("ingest", "lp", "l", "-", stdin="w_a,series=s0 batch=1i 1\n")
    assert refused.code == 4, refused
    assert f"locked by PID {child.pid}" in refused.err
    with pytest.raises(Locked) as info:
        Database.open(db_dir, "l")
    assert info.value.pid == child.pid
    reading = cli("--format", "json", "db", "show", "l")  # readers are welcome meanwhile
    assert child.poll() is None, "the writer finished too early for this test to mean anything"
    assert reading.code == 0 and reading.json()["writer_pid"] == child.pid
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    verdict = verify(db_dir, "l", Acks.parse(out), ROWS, WalLevel.SYNC)
    assert verdict.ok and verdict.recovered == 2000


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array(range(start, start + n), pa.int64()),
            "host": ["h"] * n,
            "v": [float(i) for i in range(n)],
        }
    )


def test_disk_full_on_wal_write_refuses_the_batch_only(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "d")
    db = Database.open(db_dir, "d", background=False)
    db.write([Batch("cpu", rows(5), ["host"])])
    wal_size = (db_dir / "wal" / "current.wal").stat().st_size
    IO.faults.add("enospc@wal.append")
    with pytest.raises(DiskFull, match="no space left"):
        db.write([Batch("cpu", rows(5, start=100), ["host"])])
    assert (db_dir / "wal" / "current.wal").stat().st_size == wal_size, "half a batch was left"
    IO.faults.clear()  # space returns
    db.write([Batch("cpu", rows(5, start=200), ["host"])])
    db.abandon()
    reopened = Database.open(db_dir, "d", readonly=True)
    ts = reopened.scan("cpu").column("ts").cast(pa.int64()).to_pylist()
    assert ts == [0, 1, 2, 3, 4, 200, 201, 202, 203, 204]


def test_disk_full_during_checkpoint_loses_nothing(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "d")
    db = Database.open(db_dir, "d", background=False)
    db.write(workload.make_batch(0, 50))
    db.checkpoint()
    db.write(workload.make_batch(1, 50))
    IO.faults.add("enospc@segment.write")
    with pytest.raises(DiskFull):
        db.checkpoint()
    assert not list(db_dir.rglob("*.tmp")), "a half-written segment was left behind"
    db.write(workload.make_batch(2, 50))  # writes still work while the checkpoint cannot
    IO.faults.clear()
    IO.faults.add("enospc@manifest.write")
    with pytest.raises(DiskFull):
        db.checkpoint()
    IO.faults.clear()
    db.abandon()  # as if the process died before space returned
    verdict = verify(db_dir, "d", Acks(acked={0, 1, 2}), 50, WalLevel.SYNC)
    assert verdict.ok, verdict
    db = Database.open(db_dir, "d", background=False)
    db.write(workload.make_batch(3, 50))
    db.close()
    assert verify(db_dir, "d", Acks(acked={0, 1, 2, 3}), 50, WalLevel.SYNC).ok
    listed = {
        s.file
        for s in Database.open(db_dir, "d", readonly=True).view().manifest.tables["w_a"].segments
    }
    on_disk = {str(p.relative_to(db_dir)) for p in (db_dir / "tables" / "w_a").rglob("*.parquet")}
    assert listed == on_disk


def test_disk_full_via_cli_is_one_line_and_exit_1(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("db", "create", "e").code == 0
    result = cli(
        "ingest", "lp", "e", "-", stdin="cpu v=1 1\n", env={"TSADMIN_FAULTS": "enospc@wal.append"}
    )
    assert result.code == 1
    assert result.err.startswith("Error: no space left on device")
    assert "Traceback" not in result.err
    assert cli("ingest", "lp", "e", "-", stdin="cpu v=1 1\n").code == 0


def test_enospc_error_is_translated_not_raw() -> None:
    exc = IO.translate(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), Path("x"))
    assert isinstance(exc, DiskFull)
