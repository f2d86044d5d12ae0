"""Bounded cost per input: wide lines grow the schema linearly, limits refuse runaway lines
one at a time, errors never echo a huge value, and ``select --limit`` stops reading early."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Batch, Corruption, Database
from engine.storage import manifest as manifest_format
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
    import pyarrow.parquet as pq

    path = db_dir / info.file
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups >= 2
    column = meta.row_group(meta.num_row_groups - 1).column(2)  # v of the last row group
    damaged = bytearray(path.read_bytes())
    start = column.dictionary_page_offset if column.has_dictionary_page else column.data_page_offset
    damaged[start + column.total_compressed_size - 3] ^= 0xFF
    path.write_bytes(bytes(damaged))

    reader = Database.open(db_dir, "m", readonly=True)
    with pytest.raises(Corruption):
        reader.scan("cpu")
    head = reader.scan("cpu", limit=10)
    assert head.num_rows == 10 and head.column("ts")[0].value == T0
    result = run_cli(data_dir, "--format", "json", "select", "m", "cpu", "--limit", "3")
    assert result.code == 0 and len(json.loads(result.out)) == 3
