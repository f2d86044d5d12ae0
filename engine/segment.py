"""Segment files: immutable zstd Parquet files, one table and one time partition each.

Path: ``tables/<table>/p<partition start>/<file id, 6+ digits>.parquet`` under
the database directory. A segment holds the table's columns at the time it
was written (``ts`` as a UTC timestamp in the database precision, tags as
strings, fields as typed), rows unique by (tags, ts) and sorted by them.
Segments are written whole through the I/O layer (temporary file, fsync,
rename, directory fsync) and listed in the manifest only after that, so a
crash leaves at worst an unlisted file, removed at the next open.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.fileio import IO
from engine.manifest import SegmentInfo
from engine.schema import TS

TABLES_DIR = "tables"
COMPRESSION = "zstd"


def segment_path(table: str, partition: int, file_id: int) -> str:
    return f"{TABLES_DIR}/{table}/p{partition}/{file_id:06d}.parquet"


def encode(rows: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression=COMPRESSION, row_group_size=256 * 1024)
    return bytes(sink.getvalue().to_pybytes())


def write(db_dir: Path, relpath: str, partition: int, seq: int, rows: pa.Table) -> SegmentInfo:
    """Write ``rows`` durably as a segment and describe it for the manifest."""
    path = db_dir / relpath
    IO.mkdirs(path.parent)
    data = encode(rows)
    IO.write_file_atomic(path, data, "segment.write")
    ts = rows.column(TS).cast(pa.int64())
    return SegmentInfo(
        file=relpath,
        partition=partition,
        seq=seq,
        rows=rows.num_rows,
        bytes=len(data),
        min_ts=int(pc.min(ts).as_py()),
        max_ts=int(pc.max(ts).as_py()),
    )


def read(db_dir: Path, info: SegmentInfo) -> pa.Table:
    return pq.read_table(db_dir / info.file)


def split_by_partition(rows: pa.Table, width: int) -> dict[int, pa.Table]:
    """Rows grouped by partition start (``floor(ts / width) * width``)."""
    starts = partition_starts(rows.column(TS).cast(pa.int64()), width)
    unique = pc.unique(starts).to_pylist()
    if len(unique) == 1:
        return {int(unique[0]): rows}
    return {int(start): rows.filter(pc.equal(starts, start)) for start in sorted(unique)}


def partition_starts(ts: pa.ChunkedArray | pa.Array, width: int) -> pa.ChunkedArray:
    # Integer division truncates toward zero; step back one width for times before 1970.
    product = pc.multiply(pc.divide(ts, width), width)
    return pc.if_else(pc.greater(product, ts), pc.subtract(product, width), product)
