"""The series index in a segment's footer (engine/storage/seriesindex.py): a read bounded
by tags (and a time) returns exactly the rows a full read filtered by hand does, with
the index or without it, across row groups, batches that split a series, null and
empty tags, tags the file lacks and values no series has."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.arrowmods import pa, pq
from engine.storage import segment, seriesindex

TAGS = ["host", "rack"]
SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("ns", tz="UTC")),
        ("host", pa.string()),
        ("rack", pa.string()),
        ("v", pa.float64()),
    ]
)
VALUES = ["", "a", "b", 'é,"x"']
TAG = st.one_of(st.none(), st.sampled_from(VALUES))


def _series_key(series: tuple[str | None, ...]) -> tuple[tuple[int, str], ...]:
    return tuple((0, "") if v is None else (1, v) for v in series)


@st.composite
def segments(draw: st.DrawFn) -> pa.Table:
    """Rows sorted and unique by (host, rack, ts), as a segment holds them."""
    chosen = draw(st.sets(st.tuples(TAG, TAG), min_size=1, max_size=8))
    hosts, racks, stamps = [], [], []
    for host, rack in sorted(chosen, key=_series_key):
        times = sorted(draw(st.sets(st.integers(0, 60), min_size=1, max_size=25)))
        hosts += [host] * len(times)
        racks += [rack] * len(times)
        stamps += times
    values = [float(i) for i in range(len(stamps))]
    return pa.table([stamps, hosts, racks, values], schema=SCHEMA)


def _write(
    db_dir: Path, name: str, rows: pa.Table, cuts: list[int], tags: list[str] | None
) -> segment.SegmentInfo:
    """``rows`` as a segment written through an Encoder given them in pieces."""
    encoder = segment.Encoder(rows.schema, tags)
    bounds = [0, *sorted(c % (rows.num_rows + 1) for c in cuts), rows.num_rows]
    for low, high in itertools.pairwise(bounds):
        encoder.add(rows.slice(low, high - low))
    return segment.write_encoded(db_dir, f"tables/cpu/p0/{name}.parquet", 0, 1, encoder)


def _plain(rows: pa.Table) -> list[dict[str, object]]:
    """``rows`` as dicts, ``ts`` an integer (nanoseconds)."""
    return rows.set_column(0, "ts", rows.column("ts").cast(pa.int64())).to_pylist()


def _expected(
    rows: pa.Table, where: dict[str, str], start: int | None, end: int | None
) -> list[dict[str, object]]:
    return [
        row
        for row in _plain(rows)
        if (start is None or row["ts"] >= start)  # type: ignore[operator]
        and (end is None or row["ts"] < end)  # type: ignore[operator]
        and all(row.get(tag) == value for tag, value in where.items())
    ]


@settings(max_examples=150, deadline=None)
@given(
    rows=segments(),
    cuts=st.lists(st.integers(0, 400), max_size=4),
    where=st.dictionaries(
        st.sampled_from([*TAGS, "dc"]), st.sampled_from([*VALUES, "zz"]), min_size=1
    ),
    span=st.one_of(st.none(), st.tuples(st.integers(0, 60), st.integers(0, 61))),
    group_rows=st.integers(1, 9),
    batch_rows=st.integers(1, 50),
)
def test_a_tag_bounded_read_equals_a_filtered_full_read(
    rows: pa.Table,
    cuts: list[int],
    where: dict[str, str],
    span: tuple[int, int] | None,
    group_rows: int,
    batch_rows: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db_dir = tmp_path_factory.mktemp("seg")
    start, end = span if span else (None, None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment, "ROW_GROUP_ROWS", group_rows)  # many row groups
        patch.setattr(seriesindex, "ROWS_PER_SERIES", 1)  # an index for every file
        indexed = _write(db_dir, "000001", rows, cuts, TAGS)
        plain = _write(db_dir, "000002", rows, cuts, None)
    assert seriesindex.KEY in pq.ParquetFile(db_dir / indexed.file).metadata.metadata
    assert seriesindex.KEY not in (pq.ParquetFile(db_dir / plain.file).metadata.metadata or {})
    want = _expected(rows, where, start, end)
    for info in (indexed, plain):
        got = segment.batches(db_dir, info, batch_rows, start=start, end=end, where=where)
        joined = [r for batch in got for r in _plain(batch)]
        assert joined == want


def test_a_file_with_few_rows_per_series_has_no_index(tmp_path: Path) -> None:
    """Below ROWS_PER_SERIES rows per series the index would cost more than it saves."""
    stamps = list(range(40))
    rows = pa.table([stamps, [f"h{i:02d}" for i in stamps], ["r"] * 40, [0.0] * 40], schema=SCHEMA)
    info = _write(tmp_path, "000001", rows, [], TAGS)
    assert seriesindex.KEY not in (pq.ParquetFile(tmp_path / info.file).metadata.metadata or {})
    got = segment.batches(tmp_path, info, 100, where={"host": "h07"})
    assert [r["ts"] for b in got for r in _plain(b)] == [7]


def test_a_batch_read_from_a_segment_does_not_carry_its_index(tmp_path: Path) -> None:
    """A rewrite encodes batches read from a segment: an index they carried along would
    describe the old file, not the new one."""
    rows = pa.table([list(range(40)), ["a"] * 40, ["r"] * 40, [0.0] * 40], schema=SCHEMA)
    info = _write(tmp_path, "000001", rows, [], TAGS)
    assert seriesindex.KEY in pq.ParquetFile(tmp_path / info.file).metadata.metadata
    for batch in segment.batches(tmp_path, info, 7):
        assert not batch.schema.metadata
    assert not segment.read(tmp_path, info).schema.metadata


@pytest.mark.parametrize("dictionaries", [False, True])
def test_a_bounded_read_holds_only_the_rows_it_serves(tmp_path: Path, dictionaries: bool) -> None:
    """The rows served are a copy: a slice of the decoded row groups would keep all of
    them alive, and a scan that gathers a host's rows from every segment would hold
    every row group it decoded (at 10M rows: 171 MB instead of 110)."""
    hosts = [f"h{i:03d}" for i in range(200)]
    stamps = list(range(200)) * 200
    names = [h for h in hosts for _ in range(200)]
    values = [float(i) for i in range(len(stamps))]
    rows = pa.table([stamps, names, ["r"] * len(stamps), values], schema=SCHEMA)
    info = _write(tmp_path, "000001", rows, [], TAGS)
    assert seriesindex.KEY in pq.ParquetFile(tmp_path / info.file).metadata.metadata
    got = list(
        segment.batches(tmp_path, info, 10_000, where={"host": "h007"}, dictionaries=dictionaries)
    )
    assert sum(b.num_rows for b in got) == 200
    held = sum(b.get_total_buffer_size() for b in got)
    assert held < 200 * 64, held  # a row group of 8,192 rows holds 64 KB of timestamps alone


def test_index_lookups_from_several_threads_agree(tmp_path: Path) -> None:
    """A bounded scan reads two segments at once on threads: each thread's lookups must
    decode the index alone (a zstd context shared between threads corrupts both)."""
    import threading

    hosts = [f"h{i:03d}" for i in range(300)]
    rows = pa.table(
        [
            list(range(40)) * 300,
            [h for h in hosts for _ in range(40)],
            ["r"] * 12_000,
            [0.0] * 12_000,
        ],
        schema=SCHEMA,
    )
    info = _write(tmp_path, "000001", rows, [], TAGS)
    footer = pq.ParquetFile(tmp_path / info.file).metadata.metadata
    want = {h: seriesindex.series_rows(footer, {"host": h}, 12_000) for h in hosts}
    wrong: list[object] = []

    def look() -> None:
        for _ in range(20):
            for host in hosts:
                try:
                    if seriesindex.series_rows(footer, {"host": host}, 12_000) != want[host]:
                        wrong.append(host)
                except ValueError as exc:
                    wrong.append(exc)

    threads = [threading.Thread(target=look) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong, wrong[:3]
