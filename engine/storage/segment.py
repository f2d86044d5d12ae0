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

import functools
import hashlib
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

from engine.arrowmods import pa, pc, pq
from engine.errors import Corruption, Remedy
from engine.io.fileio import IO
from engine.names import TABLES_DIR
from engine.storage.manifest import SegmentInfo
from engine.storage.schema import TS

COMPRESSION = "zstd"
ROW_GROUP_ROWS = 8 * 1024


def encode(rows: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        rows,
        sink,
        compression=COMPRESSION,
        # small enough that a bounded read decodes little beside what it wants (a
        # series is a few rows of a partition); large enough to compress well
        row_group_size=ROW_GROUP_ROWS,
        write_page_checksum=True,
    )
    return bytes(sink.getvalue().to_pybytes())


class Encoder:
    """A segment file built from batches as they come, with the row groups
    :func:`encode` makes (ROW_GROUP_ROWS rows each, the last one shorter): memory is
    the compressed file plus less than two row groups of rows."""

    def __init__(self, schema: pa.Schema) -> None:
        self._sink = pa.BufferOutputStream()
        self._writer = pq.ParquetWriter(
            self._sink, schema, compression=COMPRESSION, write_page_checksum=True
        )
        self._pending: list[pa.Table] = []
        self._held = 0
        self.rows = 0
        self.min_ts: int | None = None
        self.max_ts: int | None = None

    def add(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        low, high = pc.min_max(rows.column(TS).cast(pa.int64())).values()
        self.min_ts = low.as_py() if self.min_ts is None else min(self.min_ts, low.as_py())
        self.max_ts = high.as_py() if self.max_ts is None else max(self.max_ts, high.as_py())
        self.rows += rows.num_rows
        self._pending.append(rows)
        self._held += rows.num_rows
        if self._held >= ROW_GROUP_ROWS:
            self._flush(whole_groups_only=True)

    def _flush(self, *, whole_groups_only: bool) -> None:
        held = pa.concat_tables(self._pending)
        take = (
            held.num_rows - held.num_rows % ROW_GROUP_ROWS if whole_groups_only else held.num_rows
        )
        if take:
            self._writer.write_table(held.slice(0, take), row_group_size=ROW_GROUP_ROWS)
        rest = held.slice(take)
        self._pending, self._held = ([rest] if rest.num_rows else []), rest.num_rows

    def finish(self) -> bytes:
        """The file's bytes (the encoder is done after this)."""
        if self._pending:
            self._flush(whole_groups_only=False)
        self._writer.close()
        return bytes(self._sink.getvalue().to_pybytes())


def write(db_dir: Path, relpath: str, partition: int, seq: int, rows: pa.Table) -> SegmentInfo:
    """Write ``rows`` durably as a segment and describe it for the manifest."""
    ts = rows.column(TS).cast(pa.int64())
    low, high = int(pc.min(ts).as_py()), int(pc.max(ts).as_py())
    return _install(db_dir, relpath, partition, seq, encode(rows), rows.num_rows, low, high)


def write_encoded(
    db_dir: Path, relpath: str, partition: int, seq: int, encoder: Encoder
) -> SegmentInfo:
    """Write what ``encoder`` was given (at least a row) durably as a segment."""
    rows, low, high = encoder.rows, encoder.min_ts, encoder.max_ts
    if low is None or high is None:
        raise ValueError("a segment holds at least one row")
    return _install(db_dir, relpath, partition, seq, encoder.finish(), rows, low, high)


def _install(
    db_dir: Path,
    relpath: str,
    partition: int,
    seq: int,
    data: bytes,
    rows: int,
    low: int,
    high: int,
) -> SegmentInfo:
    path = db_dir / relpath
    IO.mkdirs(path.parent)
    IO.write_file_atomic(path, data, "segment.write")
    return SegmentInfo(
        file=relpath,
        partition=partition,
        seq=seq,
        rows=rows,
        bytes=len(data),
        min_ts=low,
        max_ts=high,
        sha256=hashlib.sha256(data).hexdigest(),
        footer=footer_digest(data),
    )


def footer_digest(data: bytes) -> str:
    """SHA-256 of a Parquet file's footer: its last ``8 + n`` bytes (the metadata of
    ``n`` bytes, ``n`` as 4 little-endian bytes, ``PAR1``)."""
    length = int.from_bytes(data[-8:-4], "little")
    return hashlib.sha256(data[-(8 + length) :]).hexdigest()


def footer_digest_of(path: Path) -> str:
    """:func:`footer_digest` of a file, reading only its footer ("" if it has none)."""
    with pa.OSFile(str(path)) as source:
        return _footer_digest_at(source) or ""


def _footer_digest_at(source: pa.NativeFile) -> str | None:
    """:func:`footer_digest` of an open file, reading only its footer; None when the
    length it declares cannot be."""
    size = source.size()
    source.seek(size - 8)
    length = int.from_bytes(source.read(4), "little")
    if not 0 < length <= size - 12:
        return None
    source.seek(size - 8 - length)
    return hashlib.sha256(source.read(length + 8)).hexdigest()


def read(db_dir: Path, info: SegmentInfo) -> pa.Table:
    """The segment's rows, after checking its size, digest and page CRCs."""
    path = db_dir / info.file
    return decode(path.read_bytes(), info, path)


# Bytes hashed at a time when a segment is checked without being held whole.
_HASH_CHUNK = 1 << 20


class Bounds(TypedDict, total=False):
    """What a read of a segment may be limited to: ``[start, end)``, tag values."""

    start: int | None
    end: int | None
    where: dict[str, str] | None


def batches(
    db_dir: Path,
    info: SegmentInfo,
    batch_rows: int,
    *,
    start: int | None = None,
    end: int | None = None,
    where: dict[str, str] | None = None,
    partial: bool = False,
    opened: BinaryIO | None = None,
    columns: list[str] | None = None,
) -> Iterator[pa.Table]:
    """The segment's rows, at most ``batch_rows`` at a time, held in memory only batch
    by batch. The file is opened and its size and digest checked now (read in chunks),
    so that a missing or damaged file fails before the first batch; each batch is
    decoded with page-CRC verification and its timestamps checked against the
    manifest's range. The caller checks the order (see :mod:`engine.storage.mergescan`).

    With bounds (``[start, end)`` in timestamp units, tag values), only the rows
    within them come out, and a row group is decoded whole only if it holds one: its
    footer statistics (checked with the rest of the file's bytes) rule it out, or its
    key columns are decoded first and tested.

    A bounded read, or a ``partial`` one (the caller may stop after a few rows), does
    not hash the whole file: it checks the size and the footer's digest, and each
    page it decodes has its CRC checked, so a damaged byte is reported if read and
    never served.

    ``opened``, if given, is the segment already open (a snapshot that holds its files
    while a compaction may remove them); it is read from its start and closed at the
    end like a file opened here. ``columns``, if given, are the only ones decoded (those
    of them the file has; a bound's key columns must be among them)."""
    path = db_dir / info.file
    bounded = start is not None or end is not None or bool(where)
    # open before checking: what is checked is what is read
    if opened is not None:
        opened.seek(0)
    source = pa.OSFile(str(path)) if opened is None else pa.PythonFile(opened, mode="r")
    try:
        if (bounded or partial) and info.footer:
            _check_footer(source, info, path)  # and the page CRCs of what is decoded
        else:
            _check_stream(source, info, path)
        reader = pq.ParquetFile(source, page_checksum_verification=True)
        if reader.metadata.num_rows != info.rows:
            raise damaged(path, f"{reader.metadata.num_rows} rows, the manifest says {info.rows}")
    except (pa.ArrowException, OSError, ValueError) as exc:
        source.close()
        raise damaged(path, f"it does not decode ({exc})") from exc
    except BaseException:
        source.close()
        raise
    if columns is not None:
        names = set(reader.schema_arrow.names)
        columns = [c for c in columns if c in names]
    if not bounded:
        return _decoded(source, reader, info, path, batch_rows, columns)
    bounds = _Bounds(start, end, where or {})
    return _decoded_within(source, reader, info, path, batch_rows, bounds, columns)


def _check_stream(source: pa.NativeFile, info: SegmentInfo, path: Path) -> None:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(_HASH_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    if size != info.bytes:
        raise damaged(path, f"{size} bytes, the manifest says {info.bytes}")
    if info.sha256 and digest.hexdigest() != info.sha256:
        raise damaged(path, "its SHA-256 does not match the manifest")
    source.seek(0)


def _check_footer(source: pa.NativeFile, info: SegmentInfo, path: Path) -> None:
    size = source.size()
    if size != info.bytes:
        raise damaged(path, f"{size} bytes, the manifest says {info.bytes}")
    digest = _footer_digest_at(source)
    if digest is None:
        raise damaged(path, "its footer's length is impossible")
    if digest != info.footer:
        raise damaged(path, "its footer's SHA-256 does not match the manifest")
    source.seek(0)


def _decoded(
    source: pa.NativeFile,
    reader: pq.ParquetFile,
    info: SegmentInfo,
    path: Path,
    batch_rows: int,
    columns: list[str] | None,
) -> Iterator[pa.Table]:
    decoded = 0
    with source:
        try:
            for batch in reader.iter_batches(batch_size=batch_rows, columns=columns):
                rows = pa.Table.from_batches([batch])
                _check_span(rows, info, path)
                decoded += rows.num_rows
                yield rows
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise damaged(path, f"it does not decode ({exc})") from exc
    # a damaged page header can end a column early without an error from the reader
    if decoded != info.rows:
        raise damaged(path, f"{decoded} rows decode, the manifest says {info.rows}")


@dataclass(frozen=True)
class _Bounds:
    start: int | None
    end: int | None
    where: dict[str, str]

    def rule_out(self, group: pq.RowGroupMetaData, position: dict[str, int]) -> bool:
        """Whether the row group's statistics prove it holds no row within bounds."""
        ts = _min_max(group, position.get(TS), raw=True)
        if ts is not None:
            if self.start is not None and ts[1] < self.start:
                return True
            if self.end is not None and ts[0] >= self.end:
                return True
        for tag, value in self.where.items():
            if tag not in position:
                return True  # a segment without the tag holds only its nulls
            span = _min_max(group, position[tag], raw=False)
            if span is not None and not span[0] <= value <= span[1]:
                return True
        return False

    def key_columns(self) -> list[str]:
        """What is decoded to test a row group: ``ts`` only for a time bound."""
        timed = self.start is not None or self.end is not None
        return [TS, *self.where] if timed else list(self.where)


def _min_max(
    group: pq.RowGroupMetaData, column: int | None, *, raw: bool
) -> tuple[Any, Any] | None:
    if column is None:
        return None
    stats = group.column(column).statistics
    if stats is None or not stats.has_min_max:
        return None
    # raw: the physical integers (timestamps in nanoseconds cannot become datetimes)
    return (stats.min_raw, stats.max_raw) if raw else (stats.min, stats.max)


def _decoded_within(
    source: pa.NativeFile,
    reader: pq.ParquetFile,
    info: SegmentInfo,
    path: Path,
    batch_rows: int,
    bounds: _Bounds,
    columns: list[str] | None,
) -> Iterator[pa.Table]:
    with source:
        try:
            arrow_schema = reader.schema_arrow  # rebuilt at every access: read it once
            position = {name: i for i, name in enumerate(arrow_schema.names)}
            metadata = reader.metadata
            # strings decoded as dictionaries: a tag value is looked for among a few, and
            # the rows a bound leaves out are dropped before any string is copied
            strings = [f.name for f in arrow_schema if pa.types.is_string(f.type)]
            if strings:
                reader = pq.ParquetFile(
                    source,
                    metadata=metadata,
                    read_dictionary=strings,
                    page_checksum_verification=True,
                )
            candidates = [
                index
                for index in range(metadata.num_rows and reader.num_row_groups)
                if not bounds.rule_out(metadata.row_group(index), position)
            ]
            keys = [k for k in bounds.key_columns() if k in position]
            for chunk in _runs_of(candidates, metadata, _TEST_ROWS):
                hits = _holding_rows(reader, chunk, keys, bounds, metadata)
                for read in _runs_of(hits, metadata, max(batch_rows, ROW_GROUP_ROWS)):
                    rows = _checked_codes(reader.read_row_groups(read, columns=columns))
                    expected = sum(metadata.row_group(i).num_rows for i in read)
                    if rows.num_rows != expected:  # a column ended early
                        raise damaged(path, f"row groups {read} decode {rows.num_rows} rows")
                    _check_span(rows, info, path)
                    rows = _plain(rows.filter(_within(rows, bounds)))
                    for offset in range(0, rows.num_rows, batch_rows):
                        yield rows.slice(offset, batch_rows)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise damaged(path, f"it does not decode ({exc})") from exc


# Rows of key columns decoded at a time to find the row groups a bounded read needs.
_TEST_ROWS = 1 << 20


def _runs_of(groups: list[int], metadata: pq.FileMetaData, rows: int) -> Iterator[list[int]]:
    """``groups`` in order, cut into lists of about ``rows`` rows (at least one group)."""
    run: list[int] = []
    held = 0
    for index in groups:
        count = metadata.row_group(index).num_rows
        if run and held + count > rows:
            yield run
            run, held = [], 0
        run.append(index)
        held += count
    if run:
        yield run


def _holding_rows(
    reader: pq.ParquetFile,
    groups: list[int],
    keys: list[str],
    bounds: _Bounds,
    metadata: pq.FileMetaData,
) -> list[int]:
    """The row groups of ``groups`` with a row within ``bounds``, found by decoding their
    key columns only, all in one read."""
    tested = _checked_codes(reader.read_row_groups(groups, columns=keys))
    ends = list(accumulate(metadata.row_group(i).num_rows for i in groups))
    if ends[-1] != tested.num_rows:  # a damaged page header can end a column early
        raise ValueError(f"key columns decode {tested.num_rows} rows, not {ends[-1]}")
    found = pc.indices_nonzero(_within(tested, bounds)).to_pylist()
    return sorted({groups[bisect_right(ends, row)] for row in found})


def _within(rows: pa.Table, bounds: _Bounds) -> pa.ChunkedArray:
    """Which ``rows`` (the key columns) are within ``bounds``, which set a tag or a
    time (a tag missing from the file: none)."""
    tests = []
    if bounds.start is not None:
        tests.append(pc.greater_equal(rows.column(TS).cast(pa.int64()), bounds.start))
    if bounds.end is not None:
        tests.append(pc.less(rows.column(TS).cast(pa.int64()), bounds.end))
    for tag, value in bounds.where.items():
        if tag not in rows.column_names:
            return pa.chunked_array([pa.array([False] * rows.num_rows)])
        tests.append(_equal(rows.column(tag), value))
    return functools.reduce(pc.and_, tests)


def _checked_codes(rows: pa.Table) -> pa.Table:
    """``rows`` once every dictionary code is known to name a dictionary entry: a
    damaged page header can decode codes past the end, which a comparison of codes
    would not notice (decoding the strings would)."""
    for column in rows.columns:
        if pa.types.is_dictionary(column.type):
            column.validate(full=True)
    return rows


def _equal(column: pa.ChunkedArray, value: str) -> pa.ChunkedArray:
    """Which values of ``column`` are ``value`` (a null is not). A dictionary column is
    compared through its dictionary, without decoding a string per row."""
    if not pa.types.is_dictionary(column.type):
        return pc.equal(column, value).fill_null(False)
    chunks = []
    for chunk in column.chunks:
        code = pc.index(chunk.dictionary, value).as_py()
        if code < 0:
            chunks.append(pa.repeat(pa.scalar(False), len(chunk)))
        else:
            chunks.append(pc.equal(chunk.indices, pa.scalar(code, chunk.indices.type)))
    return pa.chunked_array(chunks, pa.bool_()).fill_null(False)


def _plain(rows: pa.Table) -> pa.Table:
    """``rows`` with dictionary-decoded tag columns back to plain strings."""
    for i, field in enumerate(rows.schema):
        if pa.types.is_dictionary(field.type):
            rows = rows.set_column(i, field.name, pc.cast(rows.column(i), field.type.value_type))
    return rows


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
    _check_span(rows, info, path)
    return rows


def _check_span(rows: pa.Table, info: SegmentInfo, path: Path) -> None:
    """The manifest's range decides which reads, retention and deletes look at a
    segment: rows outside it would be missed by them."""
    if rows.num_rows:
        span = pc.min_max(rows.column(TS).cast(pa.int64())).as_py()
        if span["min"] < info.min_ts or span["max"] > info.max_ts:
            raise damaged(
                path,
                f"timestamps run from {span['min']} to {span['max']}, the manifest says "
                f"{info.min_ts} to {info.max_ts}",
            )


def damaged(path: Path, why: str) -> Corruption:
    database = _database_of(path)
    return Corruption(
        f"segment {path} is damaged: {why}",
        hint="verifying the database lists every damaged file; restore the table from a "
        "backup, or salvage the database (drops the damaged segments)",
        path=str(path),
    ).advise(Remedy.VERIFY_DATABASE, database)


def unsorted(path: Path) -> Callable[[], Exception]:
    """What a merged scan raises when the segment at ``path`` turns out unsorted after
    it has given rows (see :mod:`engine.storage.mergescan`)."""
    return lambda: damaged(path, "its rows are not sorted by series and time")


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
