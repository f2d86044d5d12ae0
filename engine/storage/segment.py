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

Row groups hold ROW_GROUP_ROWS rows (older files: larger ones). A segment written with
its table's tags carries a series index in its footer (:mod:`engine.storage.seriesindex`),
which reads bounded by tags use (:mod:`engine.storage.boundedread`); older files, and
files with few rows per series, have none and are read without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, TypedDict

from engine.arrowmods import pa, pc, pq
from engine.errors import Corruption, Remedy
from engine.io.fileio import IO
from engine.names import TABLES_DIR
from engine.storage import boundedread, seriesindex
from engine.storage.manifest import SegmentInfo
from engine.storage.schema import TS

COMPRESSION = "zstd"
ROW_GROUP_ROWS = 8 * 1024


def encode(rows: pa.Table, tags: list[str] | None = None) -> bytes:
    """``rows`` (sorted and unique by ``tags``, then ``ts``) as a segment file's bytes,
    with the series index of ``tags`` (:mod:`engine.storage.seriesindex`) if given."""
    encoder = Encoder(rows.schema, tags)
    encoder.add(rows)
    return encoder.finish()


class Encoder:
    """A segment file built from batches as they come (sorted and unique by the tags,
    then ``ts``), in row groups of ROW_GROUP_ROWS rows (the last one shorter): small
    enough that a bounded read decodes little beside what it wants, large enough to
    compress well. Memory is the compressed file plus less than two row groups of rows.

    With ``tags``, the file carries their series index (:mod:`engine.storage.seriesindex`)."""

    def __init__(self, schema: pa.Schema, tags: list[str] | None = None) -> None:
        self._sink = pa.BufferOutputStream()
        # without metadata: a batch read from a segment carries that file's footer entries
        self._schema = schema.remove_metadata()
        self._writer = pq.ParquetWriter(
            self._sink, self._schema, compression=COMPRESSION, write_page_checksum=True
        )
        self._index = None if tags is None else seriesindex.Builder(tags)
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
        if self._index is not None:
            self._index.add(rows)
        self._pending.append(rows.replace_schema_metadata(None))
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
        if self._index is not None and (entry := self._index.metadata()):
            self._writer.add_key_value_metadata(entry)
        self._writer.close()
        return bytes(self._sink.getvalue().to_pybytes())


def write(
    db_dir: Path, relpath: str, partition: int, seq: int, rows: pa.Table, tags: list[str]
) -> SegmentInfo:
    """Write ``rows`` (sorted and unique by ``tags``, then ``ts``) durably as a segment
    and describe it for the manifest."""
    ts = rows.column(TS).cast(pa.int64())
    low, high = int(pc.min(ts).as_py()), int(pc.max(ts).as_py())
    data = encode(rows, tags)
    return _install(db_dir, relpath, partition, seq, data, rows.num_rows, low, high)


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
    dictionaries: bool = False,
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
    of them the file has; a bound's key columns must be among them). ``dictionaries``:
    a bounded read gives its string columns dictionary-encoded (every code checked), for
    a caller that decodes many segments' few rows at once."""
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
    bounds = boundedread.Within(start, end, where or {})
    return _decoded_within(source, reader, info, path, batch_rows, bounds, columns, dictionaries)


def first_series(db_dir: Path, info: SegmentInfo) -> dict[str, str | None] | None:
    """The tag values of the segment's first series (a tag the file lacks is null and
    left out), read from the series index in its footer after the footer's digest is
    checked against the manifest: no row is decoded. None when the file has no index,
    or the manifest no footer digest to check it by."""
    if not info.footer:
        return None
    path = db_dir / info.file
    with pa.OSFile(str(path)) as source:  # a file gone (compacted away) raises as it is
        try:
            _check_footer(source, info, path)
            return seriesindex.first_series(pq.read_metadata(source).metadata, info.rows)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise damaged(path, f"its footer does not decode ({exc})") from exc


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
                rows = pa.Table.from_batches([batch]).replace_schema_metadata(None)
                _check_span(rows, info, path)
                decoded += rows.num_rows
                yield rows
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise damaged(path, f"it does not decode ({exc})") from exc
    # a damaged page header can end a column early without an error from the reader
    if decoded != info.rows:
        raise damaged(path, f"{decoded} rows decode, the manifest says {info.rows}")


def _decoded_within(
    source: pa.NativeFile,
    reader: pq.ParquetFile,
    info: SegmentInfo,
    path: Path,
    batch_rows: int,
    bounds: boundedread.Within,
    columns: list[str] | None,
    dictionaries: bool,
) -> Iterator[pa.Table]:
    def check(rows: pa.Table) -> None:
        _check_span(rows, info, path)

    read_rows = max(batch_rows, ROW_GROUP_ROWS)
    with source:
        try:
            yield from boundedread.rows_within(
                source, reader, bounds, batch_rows, read_rows, columns, check, dictionaries
            )
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise damaged(path, f"it does not decode ({exc})") from exc


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
        rows = rows.replace_schema_metadata(None)  # the footer's entries are the file's
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
