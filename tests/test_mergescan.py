"""The merged scan against the whole-table merge it replaces: the same rows in the same
order for random sources (overlapping keys, null tags, empty batches, tiny batches so
that many rounds and bounds are crossed), and what it does with a source out of order."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.db.reads import tally_sorted
from engine.errors import Corruption
from engine.storage.merge import upsert_merge
from engine.storage.mergescan import merged
from engine.storage.schema import TableSchema

SCHEMA = TableSchema(tags=["a", "b"], fields={"v": "int64"})

row = st.tuples(
    st.sampled_from([None, "x", "y", "é"]),
    st.sampled_from([None, "p", "q"]),
    st.integers(0, 6),
    st.integers(0, 99),
)


def table(rows: list[tuple[str | None, str | None, int, int]]) -> pa.Table:
    a, b, ts, v = zip(*rows, strict=True) if rows else ([], [], [], [])
    return pa.table(
        {
            "ts": pa.array(list(ts), pa.int64()).cast(pa.timestamp("ns")),
            "a": pa.array(list(a), pa.string()),
            "b": pa.array(list(b), pa.string()),
            "v": pa.array(list(v), pa.int64()),
        }
    )


def in_batches(rows: pa.Table, size: int) -> Iterator[pa.Table]:
    for offset in range(0, max(rows.num_rows, 1), size):
        yield rows.slice(offset, size)


def never() -> Exception:
    raise AssertionError("a sorted source was found out of order")


@settings(max_examples=120, deadline=None)
@given(st.lists(st.lists(row, max_size=12), max_size=5), st.integers(1, 4), st.integers(1, 5))
def test_merged_scan_gives_what_the_whole_merge_gives(
    sources: list[list[tuple[str | None, str | None, int, int]]], size: int, out_rows: int
) -> None:
    # each source as a segment is: its rows upserted (unique keys) and sorted
    stored = [upsert_merge([table(rows)], SCHEMA, "ns") for rows in sources]
    expected = upsert_merge(stored, SCHEMA, "ns")
    got = list(merged([(in_batches(s, size), never) for s in stored], SCHEMA, "ns", out_rows))
    assert all(0 < b.num_rows <= out_rows for b in got)
    together = pa.concat_tables(got) if got else expected.slice(0, 0)
    assert together.equals(expected)


def test_a_source_out_of_order_at_its_first_batch_is_read_whole() -> None:
    rows = upsert_merge([table([("x", "p", t, t) for t in range(8)])], SCHEMA, "ns")
    backwards = rows.take(list(reversed(range(rows.num_rows))))
    got = pa.concat_tables(list(merged([(in_batches(backwards, 3), never)], SCHEMA, "ns", 100)))
    assert got.equals(rows)


def test_a_source_out_of_order_after_giving_rows_raises_its_error() -> None:
    first = upsert_merge([table([("x", "p", t, t) for t in range(4)])], SCHEMA, "ns")
    other = upsert_merge([table([("x", "p", t, 0) for t in (0, 5)])], SCHEMA, "ns")

    def damaged() -> Exception:
        return Corruption("out of order")

    # the first source's second batch goes back before what was already emitted
    source = iter([first, first.slice(0, 2)])
    with pytest.raises(Corruption):
        list(merged([(source, damaged), (in_batches(other, 1), never)], SCHEMA, "ns", 100))


@settings(max_examples=100, deadline=None)
@given(st.lists(row, max_size=30), st.integers(1, 5))
def test_a_tally_in_scan_order_counts_what_a_group_by_counts(
    rows: list[tuple[str | None, str | None, int, int]], size: int
) -> None:
    ordered = upsert_merge([table(rows)], SCHEMA, "ns")
    tally = tally_sorted(in_batches(ordered, size), SCHEMA.tags)
    assert tally.rows == ordered.num_rows
    series = ordered.group_by(SCHEMA.tags, use_threads=False).aggregate([]).num_rows
    assert tally.series == series
    times = [t for _, _, t, _ in rows]
    assert (tally.min_ts, tally.max_ts) == ((min(times), max(times)) if rows else (None, None))
