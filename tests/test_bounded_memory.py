"""The merged scan holds a bounded number of rows, whatever the table's size: a table
of 20 overlapping segments in 5 partitions, 200,000 rows, read 1,000 rows at a time by
``select``'s scan and by ``db checksum``'s digest, never holds more than two batches
per segment decoded (the engine's own count, not a time), and gives the same rows and
digest as a read with the default batch."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine import Database
from engine.archive import backup
from engine.db import reads
from engine.db.database import Batch
from engine.io import scratch
from engine.storage.checksum import table_digest
from tests.conftest import new_db, run_cli

T0 = 1_700_000_000 * 10**9 // (3600 * 10**9) * 3600 * 10**9
HOSTS = 50
PER_WRITE = 50_000
BATCH = 1_000


def _write_overlapping(db: Database) -> None:
    for write in range(4):  # each write spans all 5 hours: 5 segments per checkpoint
        n = pa.array(range(PER_WRITE), pa.int64())
        step = 5 * 3600 * 10**9 // PER_WRITE  # 0.36 s: 50,000 rows over 5 hours
        rows = pa.table(
            {
                "ts": pc.add(pc.multiply(n, step), T0 + write),
                "host": pc.cast(pc.bit_wise_and(n, 63), pa.string()),
                "v": pc.cast(n, pa.float64()),
            }
        )
        db.write([Batch("cpu", rows, ["host"])])
        db.checkpoint("test")
    assert len(db.view().manifest.tables["cpu"].segments) == 20


def test_select_and_checksum_hold_a_bounded_number_of_rows(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "big", partition="1h")
    with Database.open(db_dir, "big", background=False) as db:
        _write_overlapping(db)
        segments = 20

        counts: list[int] = []
        small = list(db.scan_batches("cpu", batch_rows=BATCH, held=counts.append))
        whole = db.scan("cpu")
        assert whole.num_rows == 4 * PER_WRITE
        assert pa.concat_tables(small).equals(whole)
        assert max(b.num_rows for b in small) <= BATCH
        bound = 2 * segments * BATCH  # a batch per segment, and a round's output
        assert counts and max(counts) <= bound < whole.num_rows / 4, max(counts)

        counts.clear()
        scan = functools.partial(db.scan_batches, "cpu", batch_rows=BATCH, held=counts.append)
        schema = db.schema("cpu")
        streamed = table_digest("cpu", scan, schema)
        assert streamed == table_digest("cpu", functools.partial(db.scan_batches, "cpu"), schema)
        assert streamed.rows == whole.num_rows
        assert max(counts) <= bound


def test_a_scan_over_more_segments_than_it_opens_spills_runs_and_removes_them(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Past ``MAX_OPEN_SEGMENTS`` the scan merges groups of segments into scratch run
    files first: it never holds more than a group's batches, gives the same rows and
    digest, and leaves no run file behind, read to the end or stopped early."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    db_dir = new_db(data_dir, "many", partition="1h")
    with Database.open(db_dir, "many", background=False) as db:
        _write_overlapping(db)
        whole, schema = db.scan("cpu"), db.schema("cpu")
        digest = table_digest("cpu", functools.partial(db.scan_batches, "cpu"), schema)
        monkeypatch.setattr(reads, "MAX_OPEN_SEGMENTS", 4)  # 20 segments: 5 groups

        counts: list[int] = []
        small = list(db.scan_batches("cpu", batch_rows=BATCH, held=counts.append))
        assert pa.concat_tables(small).equals(whole)
        assert counts and max(counts) <= 2 * 5 * BATCH < whole.num_rows / 4, max(counts)
        scan = functools.partial(db.scan_batches, "cpu", batch_rows=BATCH)
        assert table_digest("cpu", scan, schema) == digest

        first = db.scan_batches("cpu", limit=7)
        assert not _run_files()  # runs of 7 rows are held, not written
        assert pa.concat_tables(list(first)).equals(whole.slice(0, 7))
        stopped = db.scan_batches("cpu", batch_rows=BATCH)
        assert len(_run_files()) == 5  # the runs are written up front
        next(stopped)
        stopped.close()  # what a consumer that stops reading does, through the generator
        assert not list(scratch.scratch_root().iterdir())


def _run_files() -> list[Path]:
    return list(scratch.scratch_root().glob("spill-*/*.arrows"))


def test_a_backup_merges_overlapping_segments_as_a_stream_cut_into_files(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A partition whose segments overlap in time is merged into archive files as
    the merge goes (never whole): each file at most FILE_ROWS rows, the files of a
    partition holding its rows after upserts once each (read by DuckDB, not by us),
    and a restore giving the same checksum."""
    monkeypatch.setattr(backup, "FILE_ROWS", 15_000)  # a partition holds 40,000 rows
    db_dir = new_db(data_dir, "merge", partition="1h")
    with Database.open(db_dir, "merge", background=False) as db:
        _write_overlapping(db)
        n = pa.array(range(0, PER_WRITE, 50), pa.int64())
        again = pa.table(  # 1,000 points of the first write, new values
            {
                "ts": pc.add(pc.multiply(n, 5 * 3600 * 10**9 // PER_WRITE), T0),
                "host": pc.cast(pc.bit_wise_and(n, 63), pa.string()),
                "v": pa.array([-1.0] * len(n)),
            }
        )
        db.write([Batch("cpu", again, ["host"])])
        db.checkpoint("test")
    made = run_cli(data_dir, "backup", "create", "merge", "--to", str(tmp_path), "--name", "b")
    assert made.code == 0, made.err
    files = sorted((tmp_path / "b" / "cpu").glob("*.parquet"))
    counts = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert max(counts) == 15_000 and sum(counts) == 4 * PER_WRITE and len(files) == 15
    glob = str(tmp_path / "b" / "cpu" / "*.parquet")
    con = duckdb.connect()
    dupes = con.execute(
        f"SELECT count(*) FROM (SELECT ts, host FROM read_parquet('{glob}') "
        "GROUP BY ts, host HAVING count(*) > 1)"
    ).fetchone()
    assert dupes == (0,)
    assert con.execute(f"SELECT count(*) FROM read_parquet('{glob}') WHERE v = -1").fetchone() == (
        1_000,
    )
    assert run_cli(data_dir, "restore", str(tmp_path / "b"), "back").code == 0
    sums = [
        run_cli(data_dir, "--format", "json", "db", "checksum", d).json() for d in ("merge", "back")
    ]
    assert sums[0]["tables"] == sums[1]["tables"]


def test_a_scan_with_a_small_limit_opens_fewer_segments_at_once(data_dir: Path) -> None:
    """With a limit of at most a source's minimum rows, the runs a scan spills are
    held (a few rows each), so it opens LIMITED_OPEN_SEGMENTS segments at a time,
    not MAX_OPEN_SEGMENTS: what it holds decoded follows that, and the rows are the
    first of the whole scan."""
    db_dir = new_db(data_dir, "limited", partition="1h")
    with Database.open(db_dir, "limited", background=False) as db:
        _write_overlapping(db)  # 20 segments: one group of 16 would be open at once
        whole = db.scan("cpu")
        counts: list[int] = []
        first = pa.concat_tables(list(db.scan_batches("cpu", limit=7, held=counts.append)))
        assert first.equals(whole.slice(0, 7))
        # a batch of each open segment (at most MIN_SOURCE_ROWS rows each) and a round
        bound = 2 * reads.LIMITED_OPEN_SEGMENTS * reads.MIN_SOURCE_ROWS
        assert reads.LIMITED_OPEN_SEGMENTS < reads.MAX_OPEN_SEGMENTS < 20
        assert counts and max(counts) <= bound, max(counts)


def test_a_keys_only_scan_gives_the_keys_of_the_full_scan(data_dir: Path) -> None:
    """What ``delete`` counts with: the same rows after upserts as the full scan (segments
    that overlap, rows still in the memtable), with ``ts`` and the tags only, bounded
    or not."""
    db_dir = new_db(data_dir, "keys", partition="1h")
    with Database.open(db_dir, "keys", background=False) as db:
        _write_overlapping(db)
        n = pa.array(range(0, PER_WRITE, 7), pa.int64())
        fresh = pa.table(  # points of the first write again, and new ones, not checkpointed
            {
                "ts": pc.add(
                    pc.multiply(n, 5 * 3600 * 10**9 // PER_WRITE), pc.add(pc.bit_wise_and(n, 1), T0)
                ),
                "host": pc.cast(pc.bit_wise_and(n, 63), pa.string()),
                "v": pa.array([-1.0] * len(n)),
            }
        )
        db.write([Batch("cpu", fresh, ["host"])])
        hour = 3600 * 10**9
        for bounds in [{}, {"start": T0 + hour, "end": T0 + 3 * hour}, {"where": {"host": "5"}}]:
            whole = db.scan("cpu", **bounds)  # type: ignore[arg-type]
            keys = pa.concat_tables(list(db.scan_batches("cpu", keys_only=True, **bounds)))  # type: ignore[arg-type]
            assert keys.column_names == ["ts", "host"]
            assert keys.equals(whole.select(["ts", "host"])), bounds
            assert whole.num_rows > 0


def test_a_bounded_scan_does_not_hold_the_dictionaries_of_what_it_skipped(
    data_dir: Path,
) -> None:
    """A bound on a rare tag keeps a few rows from each segment until all are read; a
    tag of many values beside it must not keep each row group's whole dictionary alive
    meanwhile (30 segments x 8,192 host names of 40 bytes: ~11 MB of dictionaries for
    60 rows). Measured as Arrow's allocated bytes while the rows are held."""
    db_dir = new_db(data_dir, "wide", partition="1h")
    n = 30 * 8_192
    i = pa.array(range(n), pa.int64())
    hour = 3600 * 10**9
    rows = pa.table(
        {
            "ts": pc.add(pc.multiply(pc.divide(i, 8_192), hour), T0),
            "host": pc.binary_join_element_wise(
                "h" * 32, pc.cast(pc.bit_wise_and(i, 8_191), pa.string()), ""
            ),
            "rack": pc.if_else(pc.equal(pc.bit_wise_and(i, 4_095), 7), "rare", "common"),
            "v": pc.cast(i, pa.float64()),
        }
    )
    with Database.open(db_dir, "wide", background=False) as db:
        db.write([Batch("cpu", rows, ["host", "rack"])])
        db.checkpoint("test")
        assert len(db.view().manifest.tables["cpu"].segments) == 30
        del rows, i
        before = pa.total_allocated_bytes()
        allocated: list[int] = []
        got = db.scan(
            "cpu",
            where={"rack": "rare"},
            held=lambda _: allocated.append(pa.total_allocated_bytes()),
        )
        assert got.num_rows == 60 and allocated
        assert allocated[0] - before < 4 * 1024 * 1024, (before, allocated)
