"""A delete applied to a memtable: only batches its time range reaches are rewritten,
and the rows left are exactly those the delete does not match (Hypothesis, with
bounds that often fall on a batch's first or last timestamp)."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.storage.deletes import DeleteSpec, apply_to_memtable
from engine.storage.memtable import Memtable, time_span

times = st.lists(st.integers(0, 12), min_size=1, max_size=6)
bound = st.none() | st.integers(-1, 13)


def batch(ts: list[int], host: str) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("ns")),
            "host": pa.array([host] * len(ts)),
            "v": pa.array(range(len(ts)), pa.float64()),
        }
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(times, st.sampled_from("ab")), min_size=1, max_size=8),
    bound,
    bound,
    st.sampled_from(["", "a"]),
)
def test_a_delete_removes_exactly_the_matching_rows(
    batches: list[tuple[list[int], str]], start: int | None, end: int | None, host: str
) -> None:
    memtable = Memtable()
    for ts, h in batches:
        memtable.add("cpu", batch(ts, h))
    memtable.add("mem", batch([5], "a"))
    spec = DeleteSpec("cpu", start, end, (("host", host),) if host else ())

    removed = apply_to_memtable(memtable, spec, "ns")

    def matched(t: int, h: str) -> bool:
        inside = (start is None or t >= start) and (end is None or t < end)
        return inside and (not host or h == host)

    expected = [(t, h) for ts, h in batches for t in ts if not matched(t, h)]
    left = [
        (t, h)
        for rows in memtable.batches["cpu"]
        for t, h in zip(
            rows.column("ts").cast(pa.int64()).to_pylist(),
            rows.column("host").to_pylist(),
            strict=True,
        )
    ]
    assert left == expected
    assert removed == sum(len(ts) for ts, _ in batches) - len(expected)
    assert memtable.rows == len(expected) + 1
    assert memtable.spans["cpu"] == [time_span(rows) for rows in memtable.batches["cpu"]]
    assert memtable.nbytes == sum(r.nbytes for b in memtable.batches.values() for r in b)
