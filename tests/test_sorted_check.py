"""The linear sortedness check that restores apply to archive files agrees with a plain
Python comparison of the keys (nulls first), and with the order our writers produce."""

from __future__ import annotations

from itertools import pairwise

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.merge import is_sorted, is_sorted_runs, last_key, sort_rows
from engine.schema import TableSchema

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


@settings(max_examples=400, deadline=None)
@given(rows=st.lists(row, max_size=14), split=st.integers(0, 14), dup=st.booleans())
def test_the_run_check_of_dictionary_rows_agrees_with_python(
    rows: list[tuple[str | None, str | None, int]], split: int, dup: bool
) -> None:
    """What restore uses on row groups read as dictionaries (one row group after another,
    ``before`` carrying the last key across), against the plain comparison; a dictionary
    holding a value twice (a crafted file) changes nothing."""

    def table(part: list[tuple[str | None, str | None, int]]) -> pa.Table:
        columns = {}
        for i, name in enumerate(("t0", "t1")):
            values = [r[i] for r in part]
            encoded = pa.array(values, pa.string()).dictionary_encode()
            if dup and len(encoded.dictionary):  # the same value under a second index
                dictionary = pa.concat_arrays([encoded.dictionary, encoded.dictionary])
                indices = pa.array(
                    [None if v is None else int(v) + (len(encoded.dictionary) * (k % 2))
                     for k, v in enumerate(encoded.indices.to_pylist())],
                    pa.int32(),
                )  # fmt: skip
                encoded = pa.DictionaryArray.from_arrays(indices, dictionary)
            columns[name] = encoded
        columns["ts"] = pa.array([r[2] for r in part], pa.int64())
        return pa.table(columns)

    expected = all(_key(a) <= _key(b) for a, b in pairwise(rows))
    first, second = rows[:split], rows[split:]
    ok = is_sorted_runs(table(first), ["t0", "t1"], None)
    before = last_key(table(first), ["t0", "t1"])
    ok = ok and is_sorted_runs(table(second), ["t0", "t1"], before)
    assert ok == expected
