"""The linear sortedness check (``backup verify`` on archive files, reads that stop early
on segments) agrees with a plain Python comparison of the keys (nulls first), and with
the order our writers produce."""

from __future__ import annotations

from itertools import pairwise

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.storage.merge import is_sorted, sort_rows
from engine.storage.schema import TableSchema

tag = st.one_of(st.none(), st.sampled_from(["", "a", "ab", "b", "é", "z"]))
row = st.tuples(tag, tag, st.integers(-5, 5))


def _key(r: tuple[str | None, str | None, int]) -> tuple[tuple[int, str], tuple[int, str], int]:
    return ((0, "") if r[0] is None else (1, r[0]), (0, "") if r[1] is None else (1, r[1]), r[2])


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(row, max_size=12))
def test_is_sorted_agrees_with_python(rows: list[tuple[str | None, str | None, int]]) -> None:
    table = pa.table(
        {
            "ts": pa.array([r[2] for r in rows], pa.int64()),
            "t0": pa.array([r[0] for r in rows], pa.string()),
            "t1": pa.array([r[1] for r in rows], pa.string()),
        }
    )
    expected = all(_key(a) <= _key(b) for a, b in pairwise(rows))
    assert is_sorted(table, ["t0", "t1"]) == expected
    ordered = sort_rows(
        table.cast(TableSchema(["t0", "t1"]).arrow_schema("ns")), TableSchema(["t0", "t1"])
    )
    assert is_sorted(ordered, ["t0", "t1"])
