"""Group commit, background compaction, readers beside a writer, settings changes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from engine import Batch, Database, InvalidArgument
from engine.db import checkpointing
from engine.errors import ReplicaTimeout, StorageError
from engine.harness import workload
from engine.harness.workload import Acks, verify
from engine.io.fileio import IO
from engine.replication.primary import add_replica
from engine.replication.shipper import Shipper
from engine.settings import WalLevel
from tests.conftest import new_db, start_writer, wait_ready


def test_concurrent_writers_share_fsyncs(data_dir: Path) -> None:
    """On a slow disk (10 ms per fsync), 16 writers must not pay one fsync each."""
    db = Database.open(new_db(data_dir, "g"), "g", background=False)
    db.write(workload.make_batch(999_999, 1))  # create the tables first
    IO.faults.add("slowfsync=10")
    threads, per_thread = 16, 15
    barrier = threading.Barrier(threads)

    prepared = {
        k: [workload.make_batch(k * 1000 + i, 100) for i in range(per_thread)]
        for k in range(threads)
    }

    def writer(k: int) -> None:
        barrier.wait()
        for batch in prepared[k]:
            db.write(batch)

    pool = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
    fsyncs_before = db.fsync_count
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    commits = threads * per_thread
    fsyncs = db.fsync_count - fsyncs_before
    db.close()
    # every commit was acknowledged durable, yet fewer fsyncs ran than commits: without
    # sharing there would be one each. How many share depends on how busy the machine
    # is (60 of 240 on a loaded run, 1 in 4); the rate is make bench's group commit row.
    assert 0 < fsyncs < commits / 2, (fsyncs, commits)


def test_sync_commits_each_fsync_alone_with_one_writer(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "g"), "g", background=False)
    before = db.fsync_count
    for i in range(10):
        db.write(workload.make_batch(i, 5))
    assert db.fsync_count - before >= 10  # one per commit (plus DDL for the new tables)
    db.close()


def test_flush_level_does_not_fsync_each_commit(data_dir: Path) -> None:
    db = Database.open(
        new_db(data_dir, "f", wal_level="flush", wal_fsync_period="60000"), "f", background=False
    )
    db.write(workload.make_batch(0, 5))  # creates the tables: DDL is always fsynced
    before = db.fsync_count
    for i in range(1, 20):
        assert not db.write(workload.make_batch(i, 5)).durable
    assert db.fsync_count == before
    db.close()


def test_background_compaction_bounds_segments_per_partition(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "c"), "c")
    for i in range(checkpointing.COMPACT_TRIGGER * 2 + 3):
        db.write(workload.make_batch(i, 10))
        db.checkpoint()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        counts = [len(e.segments) for e in db.view().manifest.tables.values()]
        if max(counts) <= checkpointing.COMPACT_TRIGGER:
            break
        time.sleep(0.1)
    assert max(counts) <= checkpointing.COMPACT_TRIGGER, counts
    db.close()
    assert verify(
        db.dir,
        "c",
        Acks(acked=set(range(checkpointing.COMPACT_TRIGGER * 2 + 3))),
        10,
        WalLevel.SYNC,
    ).ok


def test_readers_see_whole_batches_while_a_writer_checkpoints(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "r")
    child = start_writer(db_dir, "r", "--batches", "400", "--rows", "10", "--checkpoint-every", "3")
    wait_ready(child)
    reads = 0
    while child.poll() is None:
        reader = Database.open(db_dir, "r", readonly=True)
        if "w_a" in reader.tables():
            got = reader.scan("w_a").column("batch").to_pylist()
            counts: dict[int, int] = {}
            for n in got:
                counts[n] = counts.get(n, 0) + 1
            assert all(c == 10 for c in counts.values()), "a reader saw half a batch"
            reads += 1
    out, err = child.communicate()
    assert child.returncode == 0, err
    assert reads > 3
    assert verify(db_dir, "r", Acks.parse(out), 10, WalLevel.SYNC).ok


def test_switching_to_off_checkpoints_first_and_byrl_is_refused(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "s"), "s", background=False)
    db.write(workload.make_batch(0, 5))
    assert db.checkpoint_lsn < db.last_lsn
    db.set_setting("ts.wal.wal_level", "0")
    assert db.settings.wal_level is WalLevel.OFF
    assert db.memtable_rows() == 0, "switching to off must checkpoint what the WAL held"
    with pytest.raises(InvalidArgument, match="byrl"):
        db.set_setting("wal_level", "byrl")
    db.abandon()  # a crash: the setting was logged and fsynced
    assert Database.open(db.dir, "s", readonly=True).settings.wal_level is WalLevel.OFF


def test_ddl_survives_a_crash_even_under_off(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "o", wal_level="off"), "o", background=False)
    db.write([Batch("cpu", pa.table({"ts": pa.array([1], pa.int64()), "v": [1.0]}), [])])
    db.abandon()
    reopened = Database.open(db.dir, "o", readonly=True)
    assert reopened.tables() == ["cpu"]  # the schema was logged; the row (off) was not
    assert reopened.scan("cpu").num_rows == 0


def test_interval_checkpoint_runs_in_a_long_writer(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "i", checkpoint_interval="1s"), "i")
    db.write(workload.make_batch(0, 5))
    deadline = time.monotonic() + 10
    while db.checkpoint_lsn < db.last_lsn and time.monotonic() < deadline:
        time.sleep(0.1)
    assert db.checkpoint_lsn == db.last_lsn
    db.close()


def test_compaction_merges_neighbours_up_to_a_bounded_size(data_dir: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Merges stay under the target size (bounded memory) and keep the upsert order: a value
    written later still wins after its older neighbours were merged."""
    from engine.db import checkpoint

    monkeypatch.setattr(checkpoint, "COMPACT_TARGET_ROWS", 100)
    db = Database.open(new_db(data_dir, "b"), "b", background=False)
    for i in range(12):
        rows = pa.table(
            {"ts": pa.array(range(i * 20, i * 20 + 30), pa.int64()), "v": [float(i)] * 30}
        )
        db.write([Batch("t", rows, [])])  # 10 of its 30 keys overlap the next batch: upserts
        db.checkpoint()

    def rows_of(source: Database) -> list[tuple[int, float]]:
        t = source.scan("t")
        return list(
            zip(t.column("ts").cast(pa.int64()).to_pylist(), t.column("v").to_pylist(), strict=True)
        )

    before = rows_of(db)
    assert before[25] == (25, 1.0)  # written by batch 0, overwritten by batch 1
    report = db.compact()
    segments = db.view().manifest.tables["t"].segments
    assert report.segments_before > report.segments_after >= 3
    assert all(s.rows <= 100 for s in segments)
    assert rows_of(db) == before
    db.close()
    assert rows_of(Database.open(db.dir, "b", readonly=True)) == before


def test_an_unexpected_error_in_the_background_checkpoint_is_reported_not_lost(
    data_dir: Path,
) -> None:
    """A bug (any exception, not only the engine's own) in the checkpoint thread used to
    end that thread in silence: checkpoints stopped for the life of the process."""
    db = Database.open(new_db(data_dir, "bg"), "bg")
    one = pa.table({"ts": pa.array([1], pa.int64()), "v": [1.0]})
    db.write([Batch("cpu", one, [])])
    IO.faults.add("bug@checkpoint.after_rotate")
    db.request_checkpoint()  # the checkpoint thread runs now, and meets the bug
    deadline = time.monotonic() + 30
    while db.background_error is None:
        assert time.monotonic() < deadline, "the background thread said nothing"
        time.sleep(0.01)
    assert "internal error in the background checkpoint" in db.background_error.message
    assert "planted bug" in db.background_error.message
    assert db.problem is not None and "planted bug" in db.problem
    with pytest.raises(StorageError, match="planted bug"):
        db.write([Batch("cpu", one, [])])
    db.abandon()


def test_an_unexpected_error_in_a_shipping_round_is_reported_not_lost(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a shipping round would have ended the shipper thread in silence (the
    replica falling behind unseen): status names it, the next write and /health too."""
    db = Database.open(new_db(data_dir, "sh"), "sh")
    add_replica(db, str(tmp_path / "store"))
    one = pa.table({"ts": pa.array([1], pa.int64()), "v": [1.0]})
    db.write([Batch("cpu", one, [])])
    replication = db.replication
    assert replication is not None

    def planted(self: object, uuid: str, epoch: int) -> object:
        raise RuntimeError("planted shipping bug")

    monkeypatch.setattr(Shipper, "ship", planted)
    replication.ship_all()  # what the background thread runs: it must not raise
    assert db.problem is not None and "planted shipping bug" in db.problem
    assert "internal error in the background shipping" in db.problem
    (progress,) = replication.progress()
    assert progress.error is not None and "planted shipping bug" in progress.error
    with pytest.raises(StorageError, match="planted shipping bug"):
        db.write([Batch("cpu", one, [])])
    db.abandon()


def test_a_store_that_never_answers_holds_one_thread_not_one_per_write(
    data_dir: Path, tmp_path: Path
) -> None:
    """byrl writes against a store whose upload never returns (the round is held at the
    upload) each fail after replica_timeout; the rounds run on one worker thread, so the
    stuck upload holds that one thread and waiting writes add none."""
    db = Database.open(new_db(data_dir, "hang"), "hang")
    add_replica(db, str(tmp_path / "store"))
    assert db.replication is not None
    db.replication.ship_all()  # the first round: the snapshot
    db.set_setting("replica_timeout", "200ms")
    db.set_setting("wal_level", "byrl")
    one = pa.table({"ts": pa.array([1], pa.int64()), "v": [1.0]})
    gate = tmp_path / "gate"
    gate.mkdir()
    IO.faults.add(f"gate={gate}")
    IO.faults.add("pause@ship.before_upload")
    try:
        counts = []
        for _ in range(6):
            with pytest.raises(ReplicaTimeout):
                db.write([Batch("cpu", one, [])])
            counts.append(threading.active_count())
        assert (gate / "ship.before_upload.reached").exists()  # the upload really hangs
        assert counts == [counts[0]] * 6, counts  # no thread per write
    finally:
        (gate / "ship.before_upload.go").touch()
        IO.faults.clear()
        IO.faults.gate = None
    db.close()
