"""Segment files: immutable zstd Parquet files, one table and one time partition each.

Path: ``tables/<table dir>/p<partition start>/<file id, 6+ digits>.parquet`` under
the database directory. A segment holds the table's columns at the time it
was written (``ts`` as a UTC timestamp in the database precision, tags as
strings, fields as typed), rows unique by (tags, ts) and sorted by them.
Segments are written whole through the I/O layer (temporary file, fsync,
rename, directory fsync) and listed in the manifest only after that, so a
crash leaves at worst an unlisted file, removed at the next open.

Integrity, end to end: every data page carries Parquet's page CRC
(``write_page_checksum``), and the manifest records the SHA-256 of the whole
file when it is written. Every read checks the size and the digest of the
bytes it read, then decodes them with page-CRC verification, so a damaged
segment is reported as :class:`~engine.errors.Corruption` naming the file,
never served as different rows; backups copy a segment only after the same
check. Segments listed by a manifest written before digests existed (no
``sha256``) are still checked page by page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from engine.arrowmods import pa, pc, pq
from engine.errors import Corruption, Remedy
from engine.io.fileio import IO
from engine.names import TABLES_DIR
from engine.storage.manifest import SegmentInfo
from engine.storage.merge import is_sorted
from engine.storage.schema import TS

COMPRESSION = "zstd"


def encode(rows: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        rows,
        sink,
        compression=COMPRESSION,
        row_group_size=256 * 1024,
        write_page_checksum=True,
    )
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
        sha256=hashlib.sha256(data).hexdigest(),
    )


def read(db_dir: Path, info: SegmentInfo) -> pa.Table:
    """The segment's rows, after checking its size, digest and page CRCs."""
    path = db_dir / info.file
    return decode(path.read_bytes(), info, path)


# Rows decoded at a time when only the first rows of a segment are wanted.
HEAD_BATCH_ROWS = 8_192


def read_head(
    db_dir: Path,
    info: SegmentInfo,
    rows: int,
    keep: Callable[[pa.Table], pa.Table],
    tags: list[str],
) -> pa.Table:
    """The first ``rows`` rows that ``keep`` keeps (all of them, if fewer), decoding batch
    by batch and stopping there. A segment is sorted by its key, so the first
    N keys of any ordered merge of segments are among the first N rows of each.

    The order is checked on what is decoded (a restore checks an archive file's
    digest and footer, not its order): rows out of order make this read all of the
    segment's rows, which the caller's merge sorts, so the answer stays right."""
    path = db_dir / info.file
    data = path.read_bytes()
    check_bytes(data, info, path)
    try:
        reader = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        if reader.metadata.num_rows != info.rows:
            raise damaged(path, f"{reader.metadata.num_rows} rows, the manifest says {info.rows}")
        pieces, found, last = [], 0, None
        stored = set(reader.schema_arrow.names)  # schema_arrow is rebuilt at every access
        present = [t for t in tags if t in stored]  # a newer tag: null
        for batch in reader.iter_batches(batch_size=max(rows, HEAD_BATCH_ROWS)):
            decoded = pa.Table.from_batches([batch])
            keys = decoded.select([*present, TS])
            if not is_sorted(keys if last is None else pa.concat_tables([last, keys]), present):
                return keep(decode(data, info, path))
            last = keys.slice(keys.num_rows - 1) if keys.num_rows else last
            piece = keep(decoded)
            pieces.append(piece.slice(0, rows - found))
            found += piece.num_rows
            if found >= rows:
                break
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise damaged(path, f"it does not decode ({exc})") from exc
    return pa.concat_tables(pieces) if pieces else reader.schema_arrow.empty_table()


def check_bytes(data: bytes, info: SegmentInfo, path: Path) -> None:
    """Raise :class:`Corruption` unless ``data`` is what the manifest recorded."""
    if len(data) != info.bytes:
        raise damaged(path, f"{len(data)} bytes, the manifest says {info.bytes}")
    if info.sha256 and hashlib.sha256(data).hexdigest() != info.sha256:
        raise damaged(path, "its SHA-256 does not match the manifest")


def decode(data: bytes, info: SegmentInfo, path: Path) -> pa.Table:
    check_bytes(data, info, path)
    try:
        rows = pq.read_table(pa.BufferReader(data), page_checksum_verification=True)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise damaged(path, f"it does not decode ({exc})") from exc
    if rows.num_rows != info.rows:
        raise damaged(path, f"{rows.num_rows} rows, the manifest says {info.rows}")
    if rows.num_rows:
        # the manifest's range decides which reads, retention and deletes look here
        span = pc.min_max(rows.column(TS).cast(pa.int64())).as_py()
        if span["min"] < info.min_ts or span["max"] > info.max_ts:
            raise damaged(
                path,
                f"timestamps run from {span['min']} to {span['max']}, the manifest says "
                f"{info.min_ts} to {info.max_ts}",
            )
    return rows


def damaged(path: Path, why: str) -> Corruption:
    database = _database_of(path)
    return Corruption(
        f"segment {path} is damaged: {why}",
        hint="verifying the database lists every damaged file; restore the table from a "
        "backup, or salvage the database (drops the damaged segments)",
        path=str(path),
    ).advise(Remedy.VERIFY_DATABASE, database)


def _database_of(path: Path) -> str:
    """The database directory's name, from a path ``<db>/tables/<t>/p<n>/<file>``."""
    parts = path.parts
    return parts[-5] if len(parts) >= 5 and parts[-4] == TABLES_DIR else "DB"


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
