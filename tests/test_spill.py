"""Spilled runs (engine/storage/spill.py) give back exactly the rows written: tags
stored run-end encoded (nulls, empty strings, long and short runs), a run short
enough to stay in memory, and one written to its file across several batches."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.arrowmods import pa
from engine.storage import spill

SCHEMA = pa.schema(
    [("ts", pa.int64()), ("host", pa.string()), ("rack", pa.string()), ("v", pa.float64())]
)
TAG = st.one_of(st.none(), st.sampled_from(["", "a", "b", 'é,"x"', "h" * 40]))


@st.composite
def tables(draw: st.DrawFn) -> pa.Table:
    runs = draw(st.lists(st.tuples(TAG, TAG, st.integers(1, 40)), min_size=0, max_size=30))
    hosts, racks = [], []
    for host, rack, length in runs:
        hosts += [host] * length
        racks += [rack] * length
    n = len(hosts)
    values = draw(st.lists(st.floats(allow_nan=False), min_size=n, max_size=n))
    return pa.table([list(range(n)), hosts, racks, values], schema=SCHEMA)


@settings(max_examples=60, deadline=None)
@given(rows=tables(), batch_rows=st.integers(1, 50))
def test_a_run_reads_back_the_rows_written(
    rows: pa.Table, batch_rows: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("spill") / "run.arrows"
    halves = [rows.slice(0, rows.num_rows // 2), rows.slice(rows.num_rows // 2)]
    run = spill.Run(path, SCHEMA, runs_in=["host", "rack", "v"]).write(halves, batch_rows)
    back = list(run.batches())
    assert run.rows == rows.num_rows
    assert path.exists() == (rows.num_rows > batch_rows)  # short runs are held, not written
    assert all(b.num_rows <= batch_rows and b.schema == SCHEMA for b in back)
    joined = pa.concat_tables(back) if back else SCHEMA.empty_table()
    assert joined.equals(rows)
