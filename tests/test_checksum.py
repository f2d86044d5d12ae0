"""The checksum's CSV formatter against pyarrow's CSV writer it stands in for: the same
bytes for random tables of every column type the engine stores (UTC timestamps of
each precision, strings with quotes, commas, newlines and nulls, floats with NaN,
infinities and signed zeros, integers at their limits, booleans)."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.storage.checksum import csv_bytes, table_digest
from engine.storage.schema import TableSchema

OPTIONS = pacsv.WriteOptions(include_header=False)
text = st.none() | st.text(
    alphabet=st.sampled_from(["a", "Z", '"', ",", "\n", " ", "é", "\\", "'"]), max_size=6
)
floats = (
    st.none()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0.0, -0.0, 1e-300, 1e300, 5e-324])
)
ints = st.none() | st.integers(-(2**63), 2**63 - 1)
uints = st.none() | st.integers(0, 2**64 - 1)
bools = st.none() | st.booleans()


@settings(max_examples=200, deadline=None)
@given(st.data(), st.sampled_from(["s", "ms", "us", "ns"]), st.integers(0, 12))
def test_the_formatter_writes_what_the_csv_writer_writes(
    data: st.DataObject, unit: str, n: int
) -> None:
    # any time a nanosecond timestamp can hold, in the unit's steps
    per = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[unit]
    nanos = data.draw(st.lists(st.integers(-(2**63) + 1, 2**63 - 1), min_size=n, max_size=n))
    ts = [t // per for t in nanos]
    table = pa.table(
        {
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp(unit, tz="UTC")),
            "host": pa.array(data.draw(st.lists(text, min_size=n, max_size=n)), pa.string()),
            "f": pa.array(data.draw(st.lists(floats, min_size=n, max_size=n)), pa.float64()),
            "i": pa.array(data.draw(st.lists(ints, min_size=n, max_size=n)), pa.int64()),
            "u": pa.array(data.draw(st.lists(uints, min_size=n, max_size=n)), pa.uint64()),
            "b": pa.array(data.draw(st.lists(bools, min_size=n, max_size=n)), pa.bool_()),
        }
    )
    _assert_written_alike(table, data.draw(st.integers(0, n)))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(text, text, st.integers(1, 9)), max_size=8), st.integers(0, 40))
def test_string_columns_side_by_side_are_written_alike_in_runs(
    runs: list[tuple[str | None, str | None, int]], offset: int
) -> None:
    # sorted rows repeat their tags along a series: the formatter makes those per run
    hosts = [host for host, _, times in runs for _ in range(times)]
    regions = [region for _, region, times in runs for _ in range(times)]
    n = len(hosts)
    table = pa.table(
        {
            "ts": pa.array(range(n), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "host": pa.array(hosts, pa.string()),
            "region": pa.array(regions, pa.string()),
            "i": pa.array(range(n), pa.int64()),
            "note": pa.array(hosts, pa.string()),
        }
    )
    _assert_written_alike(table, min(offset, n))


def _assert_written_alike(table: pa.Table, offset: int) -> None:
    for rows in (table, table.slice(offset), pa.concat_tables([table, table.slice(offset)])):
        expected = io.BytesIO()
        pacsv.write_csv(rows, expected, OPTIONS)
        assert bytes(csv_bytes(rows, OPTIONS)) == expected.getvalue()


def test_a_table_digest_hashes_its_rows_as_the_csv_writer_writes_them() -> None:
    # batches large enough to be formatted in halves on two threads; the halves join
    # to the writer's bytes, in order
    n = 150_000
    hosts = [f"h{i // 700}" for i in range(n)]
    table = pa.table(
        {
            "ts": pa.array(range(n), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "host": pa.array(hosts, pa.string()),
            "region": pa.array([None if i % 3000 < 700 else 'r,"1"' for i in range(n)]),
            "i": pa.array([None if i % 7 == 0 else i * 31 for i in range(n)], pa.int64()),
            "v": pa.array([i / 3 for i in range(n)], pa.float64()),
        }
    )
    batches = [table.slice(0, 70_000), table.slice(70_000)]
    schema = TableSchema(["host", "region"], {"i": "int64", "v": "float64"})
    digest = table_digest("cpu", lambda: iter(batches), schema)

    expected = hashlib.sha256(b"cpu\n" + str(table.schema).encode() + b"\n")
    written = io.BytesIO()
    pacsv.write_csv(table, written, OPTIONS)
    expected.update(written.getvalue())
    assert (digest.rows, digest.sha256) == (n, expected.hexdigest())
