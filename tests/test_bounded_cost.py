"""Bounded cost per input: wide lines grow the schema linearly, limits refuse runaway lines
one at a time, errors never echo a huge value, and ``select --limit`` stops reading early."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine import Batch, Corruption, Database
from engine.storage import manifest as manifest_format
from engine.storage.deletes import DeleteSpec
from tests.conftest import new_db, run_cli

T0 = 1_700_000_000_000_000_000


def wide_line(tags: int, ts: int = T0) -> str:
    return "w," + ",".join(f"t{i}=v{i}" for i in range(tags)) + f" f=1i {ts}"


def test_a_line_with_10000_tag_keys_ingests_and_reads_back(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "config", "set", "m", "max_tags_per_series", "20000").code == 0
    source = tmp_path / "wide.lp"
    source.write_text(wide_line(10_000) + "\n")
    done = run_cli(data_dir, "ingest", "lp", "m", str(source))
    assert done.code == 0, done.err
    rows = run_cli(data_dir, "--format", "json", "select", "m", "w", "--limit", "1").json()
    assert len(rows) == 1 and rows[0]["t9999"] == "v9999" and rows[0]["f"] == 1


def test_runaway_lines_are_refused_one_at_a_time(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    huge = "x" * (10 << 20)
    lines = [
        f"cpu,host=a v=1i {T0}",
        wide_line(1_100),
        f'cpu,host=b s="{huge}" {T0}',
        f"cpu,host=c {'k' * 5_000_000}=1i {T0}",
        f"cpu,host=d v=4i {T0}",
    ]
    source = tmp_path / "in.lp"
    source.write_text("\n".join(lines) + "\n")

    stopped = run_cli(data_dir, "ingest", "lp", "m", str(source))
    assert stopped.code == 6, stopped
    assert ":2:" in stopped.err and "max_tags_per_series" in stopped.err
    assert len(stopped.err) < 2_000

    rejects = tmp_path / "rejects.lp"
    skipped = run_cli(
        data_dir, "ingest", "lp", "m", str(source), "--on-error", "skip", "--rejects", str(rejects)
    )
    assert skipped.code == 7 and len(skipped.err) < 2_000, skipped.err[:3000]
    kept = run_cli(data_dir, "--format", "json", "select", "m", "cpu").json()
    assert sorted(r["host"] for r in kept) == ["a", "d"]
    text = rejects.read_text()
    reasons = [line for line in text.splitlines() if line.startswith("# ")]
    assert [r.split(":")[1] for r in reasons] == ["2", "3", "4"], reasons
    assert "max_line_bytes" in reasons[1] and "max_line_bytes" in reasons[2]
    assert huge in text, "a rejected line is kept whole in the rejects file"


def test_fields_per_table_are_limited(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "config", "set", "m", "max_fields_per_table", "3").code == 0
    source = tmp_path / "in.lp"
    source.write_text("".join(f"cpu f{i}=1i {T0 + i}\n" for i in range(5)))
    result = run_cli(data_dir, "ingest", "lp", "m", str(source), "--on-error", "skip")
    assert result.code == 7, result
    shown = run_cli(data_dir, "--format", "json", "table", "show", "m", "cpu").json()
    fields = [c["column"] for c in shown["columns"] if c["kind"] == "field"]
    assert fields == ["f0", "f1", "f2"]


def _write_segments(db: Database, batches: list[list[tuple[str, int, float]]]) -> None:
    for rows in batches:
        table = pa.table(
            {
                "ts": pa.array([T0 + t for _, t, _ in rows], pa.int64()),
                "host": [h for h, _, _ in rows],
                "v": [v for _, _, v in rows],
            }
        )
        db.write([Batch("cpu", table, ["host"])])
        db.checkpoint()


row = st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 40), st.floats(0, 9))


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.lists(row, min_size=1, max_size=30), min_size=1, max_size=5),
    unsaved=st.lists(row, max_size=10),
    limit=st.integers(0, 60),
    host=st.sampled_from([None, "a", "c"]),
    start=st.sampled_from([None, 5, 20]),
)
def test_select_with_limit_equals_the_head_of_the_full_result(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[list[tuple[str, int, float]]],
    unsaved: list[tuple[str, int, float]],
    limit: int,
    host: str | None,
    start: int | None,
) -> None:
    db_dir = new_db(tmp_path_factory.mktemp("limit"), "m")
    with Database.open(db_dir, "m", background=False) as db:
        _write_segments(db, batches)
        if unsaved:
            table = pa.table(
                {
                    "ts": pa.array([T0 + t for _, t, _ in unsaved], pa.int64()),
                    "host": [h for h, _, _ in unsaved],
                    "v": [v for _, _, v in unsaved],
                }
            )
            db.write([Batch("cpu", table, ["host"])])
        where = {"host": host} if host else None
        first = None if start is None else T0 + start
        full = db.scan("cpu", start=first, where=where)
        head = db.scan("cpu", start=first, where=where, limit=limit)
        assert head.equals(full.slice(0, limit))


def test_select_with_a_limit_stops_reading_a_segment_early(data_dir: Path) -> None:
    """Observable proof that the read stops: the segment's last row group is damaged (and
    the manifest carries no digest, as one written before digests existed), so a full read
    fails while a read of its first rows never reaches the damage."""
    db_dir = new_db(data_dir, "m")
    n = 300_000  # several row groups
    table = pa.table(
        {"ts": pa.array(range(T0, T0 + n), pa.int64()), "host": ["a"] * n, "v": [1.5] * n}
    )
    with Database.open(db_dir, "m", background=False) as db:
        db.write([Batch("cpu", table, ["host"])])
    loaded = manifest_format.load(db_dir)
    (entry,) = loaded.tables.values()
    (info,) = entry.segments
    entry.segments = [type(info)(**{**info.to_json(), "sha256": ""})]
    manifest_format.install(db_dir, loaded)
    path = db_dir / info.file
    groups = pq.ParquetFile(path).metadata.num_row_groups
    assert groups >= 2
    _damage_column_chunk(path, groups - 1, 2)  # v of the last row group

    reader = Database.open(db_dir, "m", readonly=True)
    with pytest.raises(Corruption):
        reader.scan("cpu")
    head = reader.scan("cpu", limit=10)
    assert head.num_rows == 10 and head.column("ts")[0].value == T0
    result = run_cli(data_dir, "--format", "json", "select", "m", "cpu", "--limit", "3")
    assert result.code == 0 and len(json.loads(result.out)) == 3


HOUR = 3_600_000_000_000
# a batch: its hosts, its first second, how many seconds, a value; each host gets at
# least 8 rows, so every segment carries a series index
dense = st.tuples(
    st.sets(st.sampled_from(["a", "b", "c", "d"]), min_size=1),
    st.integers(0, 60),
    st.integers(8, 20),
    st.floats(0, 9),
)


def _dense_table(hosts: set[str], first: int, seconds: int, value: float, at: int) -> pa.Table:
    points = [(h, at + (first + s) * 1_000_000_000) for h in sorted(hosts) for s in range(seconds)]
    return pa.table(
        {
            "ts": pa.array([t for _, t in points], pa.int64()),
            "host": [h for h, _ in points],
            "v": [value] * len(points),
        }
    )


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(st.tuples(dense, st.integers(0, 2)), min_size=5, max_size=9),
    limit=st.integers(1, 40),
    host=st.sampled_from([None, "b", "d"]),
    start=st.sampled_from([None, 10, 3_600 + 30]),
    deleted=st.sampled_from([None, (0, 12), (5, 3_600 + 40)]),
)
@example(  # the oldest segment's first rows deleted: the lead is in the next one too
    batches=[
        (({"a"}, 0, 20, 1.0), 0),
        (({"a"}, 15, 10, 2.0), 0),
        (({"b"}, 0, 8, 3.0), 1),
        (({"c"}, 0, 8, 3.0), 1),
        (({"d"}, 0, 8, 3.0), 2),
    ],
    limit=10,
    host=None,
    start=None,
    deleted=(0, 12),
)
def test_a_limited_select_over_many_segments_equals_the_head_of_the_full_result(
    tmp_path_factory: pytest.TempPathFactory,
    batches: list[tuple[tuple[set[str], int, int, float], int]],
    limit: int,
    host: str | None,
    start: int | None,
    deleted: tuple[int, int] | None,
) -> None:
    # more segments than a limited scan opens at once: it picks those that may lead by
    # their footers, over upserts (batches meet), partitions and a pending delete
    db_dir = new_db(tmp_path_factory.mktemp("lead"), "m", partition="1h")
    with Database.open(db_dir, "m", background=False) as db:
        for (hosts, first, seconds, value), hour in batches:
            table = _dense_table(hosts, first, seconds, value, T0 + hour * HOUR)
            db.write([Batch("cpu", table, ["host"])])
            db.checkpoint()
        if deleted is not None:
            low, high = deleted
            db.log_delete(DeleteSpec("cpu", T0 + low * 1_000_000_000, T0 + high * 1_000_000_000))
        where = {"host": host} if host else None
        first_ts = None if start is None else T0 + start * 1_000_000_000
        full = db.scan("cpu", start=first_ts, where=where)
        head = db.scan("cpu", start=first_ts, where=where, limit=limit)
        assert head.equals(full.slice(0, limit))


def test_a_limited_select_reads_only_the_segments_that_may_lead(data_dir: Path) -> None:
    """Observable proof that the other segments are never decoded: a data page of the
    newest partition's segment is damaged, so a full read fails, while the first rows
    (the oldest hour of host a) are read from the oldest segments alone."""
    db_dir = new_db(data_dir, "m", partition="1h")
    with Database.open(db_dir, "m", background=False) as db:
        for hour in range(8):
            table = _dense_table({"a", "b"}, 0, 60, float(hour), T0 + hour * HOUR)
            db.write([Batch("cpu", table, ["host"])])
            db.checkpoint()
    (entry,) = manifest_format.load(db_dir).tables.values()
    newest = max(entry.segments, key=lambda s: s.min_ts)
    _damage_column_chunk(db_dir / newest.file, 0, 2)  # v of its first row group

    reader = Database.open(db_dir, "m", readonly=True)
    with pytest.raises(Corruption):
        reader.scan("cpu")
    head = reader.scan("cpu", limit=5)
    assert head.column("host").to_pylist() == ["a"] * 5
    assert [t.value for t in head.column("ts")] == [T0 + s * 1_000_000_000 for s in range(5)]
    result = run_cli(data_dir, "--format", "json", "select", "m", "cpu", "--limit", "3")
    assert result.code == 0 and len(json.loads(result.out)) == 3


def _damage_column_chunk(path: Path, group: int, column: int) -> None:
    """Flip a byte near the end of one column chunk's pages: the footer (and its digest)
    stay as they were, so only a read that decodes that chunk can see the damage."""
    chunk = pq.ParquetFile(path).metadata.row_group(group).column(column)
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
    damaged = bytearray(path.read_bytes())
    damaged[start + chunk.total_compressed_size - 3] ^= 0xFF
    path.write_bytes(bytes(damaged))
