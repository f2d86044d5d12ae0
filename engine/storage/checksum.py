"""An order-independent digest of a database's rows, for comparing copies.

Per table: the rows after upserts, columns in a canonical order (``ts``, tags
by name, fields by name; columns that hold no value at all are left out, so a
column created by a rolled-back write does not count), sorted by (tags, ts),
written as CSV by pyarrow, hashed with SHA-256 together with the table name
and the column types. The database digest hashes the table digests in name
order. Two copies with the same rows give the same digests, whatever order
the rows were written in and however they are split into segments.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass

from engine.arrowmods import pa, pacsv, pc
from engine.io.ahead import SpareThread, ahead
from engine.storage.mergescan import series_starts
from engine.storage.schema import TS, TableSchema

_BATCH = 65536


@dataclass
class TableDigest:
    table: str
    rows: int
    sha256: str


def table_digest(
    name: str, scan: Callable[[], Iterable[pa.Table]], schema: TableSchema
) -> TableDigest:
    """The digest of a table's rows, read through ``scan``: a callable giving them
    after upserts, in segment order (tags, nulls first, then ``ts``: the canonical
    order, since the tags are kept sorted by name and a column of nulls orders
    nothing), any number at a time, at least one. Memory is one batch.

    Which columns hold a value is known only at the end, so the hash assumes all of
    them and ``scan`` runs a second time without those that held none (a column
    created by a rolled-back write, or all of whose values were deleted)."""
    everything = [TS, *sorted(schema.tags), *sorted(schema.fields)]
    rows, sha256, valued = _hash(name, scan(), everything)
    if valued != set(everything):
        kept = [c for c in everything if c in valued]
        rows, sha256, _ = _hash(name, scan(), kept)
    return TableDigest(name, rows, sha256)


def _hash(name: str, batches: Iterable[pa.Table], columns: list[str]) -> tuple[int, str, set[str]]:
    """Rows, SHA-256 of ``columns`` of ``batches`` as headerless CSV, and the columns
    that held a value."""
    digest, no_header = hashlib.sha256(), pacsv.WriteOptions(include_header=False)
    rows, valued, started = 0, {TS}, False
    # the scan runs a batch ahead on its own thread; closed here if hashing fails
    with closing(ahead(batches, name="checksum-scan")) as scanned:
        for batch in scanned:
            canonical = batch.select(columns)
            if not started:
                header = str(canonical.schema.remove_metadata()).encode()
                digest.update(name.encode() + b"\n" + header + b"\n")
                started = True
            valued.update(c for c in columns if canonical.column(c).null_count < len(canonical))
            rows += canonical.num_rows
            for start in range(0, canonical.num_rows, _BATCH):
                for text in _formatted(canonical.slice(start, _BATCH), no_header):
                    digest.update(text)
    if not started:
        raise ValueError("a scan gives at least one batch, which carries the columns")
    return rows, digest.hexdigest(), valued


def _formatted(rows: pa.Table, options: pacsv.WriteOptions) -> list[bytes | memoryview]:
    """``rows`` as :func:`csv_bytes` writes them, in two pieces that join to the same
    bytes: the second half is formatted on a thread of its own while this one formats
    the first (pyarrow's kernels release the GIL, and the formatting, not the scan, is
    what a checksum waits for)."""
    half = rows.num_rows // 2
    if half < _SPLIT_ROWS:
        return [csv_bytes(rows, options)]
    later = _FORMATTER.submit(csv_bytes, rows.slice(half), options)
    try:
        first = csv_bytes(rows.slice(0, half), options)
    finally:
        second = later.result()  # waited for even when the first half failed
    return [first, second]


# Rows below which a batch is formatted whole: a hand-over costs more than it saves.
_SPLIT_ROWS = 4_096
_FORMATTER = SpareThread("checksum-format")


def csv_bytes(rows: pa.Table, options: pacsv.WriteOptions) -> bytes | memoryview:
    """``rows`` as pyarrow's CSV writer writes them (no header), byte for byte. Its
    formatting of a UTC timestamp (a time-zone lookup per value) is 15 times slower
    than the rest of a TSBS row: such a table is formatted here with the writer's own
    rules (each value cast to text, strings quoted with quotes doubled, a null empty,
    ``,`` between values and ``\n`` after each row) and the timestamp formatted as
    naive, with the ``Z`` the writer appends. tests/test_checksum.py holds the two
    equal on random tables."""
    if not any(_is_utc(f.type) for f in rows.schema) or not rows.num_rows:
        out = io.BytesIO()
        pacsv.write_csv(rows, out, options)
        return out.getvalue()
    texts = _column_texts(rows)
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*texts, ","), "\n", "")
    lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    _, offsets, data = lines.buffers()
    width = 8 if pa.types.is_large_string(lines.type) else 4
    first = int.from_bytes(offsets[width * lines.offset : width * (lines.offset + 1)], "little")
    end = width * (lines.offset + len(lines))
    last = int.from_bytes(offsets[end : end + width], "little")
    return memoryview(data)[first:last]


def _column_texts(rows: pa.Table) -> list[pa.ChunkedArray | pa.Array]:
    """Each column of ``rows`` as CSV text; a stretch of two or more string columns
    next to each other (the tags) as one text, joined with ``,``, made once per run
    of rows that repeat them (a series) and repeated for the run's rows: sorted rows
    change their tags only where a series begins."""
    texts: list[pa.ChunkedArray | pa.Array] = []
    names, kinds = rows.column_names, [f.type for f in rows.schema]
    at = 0
    while at < len(names):
        end = at
        while end < len(names) and _is_text(kinds[end]):
            end += 1
        if end - at >= 2 and (joined := _runs_joined(rows.select(names[at:end]))) is not None:
            texts.append(joined)
            at = end
            continue
        texts.append(_as_text(rows.column(at), kinds[at]))
        at += 1
    return texts


def _runs_joined(columns: pa.Table) -> pa.Array | None:
    """The string ``columns`` as CSV text joined per row, made per run of equal rows;
    None when runs are too short for that to pay."""
    n = columns.num_rows
    starts = series_starts(columns, columns.column_names)  # a run: those columns equal
    if len(starts) * _RUN_GAIN > n:
        return None
    firsts = columns.take(pa.array(starts, pa.int64())).combine_chunks()
    texts = [_as_text(c, c.type) for c in firsts.columns]
    joined = pc.binary_join_element_wise(*texts, ",")
    ends = pa.array([*starts[1:], n], pa.int32())
    return pc.run_end_decode(pa.RunEndEncodedArray.from_arrays(ends, joined))


# Rows a run must average for its columns to be formatted per run, not per row.
_RUN_GAIN = 4


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _is_utc(kind: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(kind) and kind.tz in ("UTC", "utc", "Z", "+00:00"))


def _as_text(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    if _is_utc(kind):
        naive = column.cast(pa.timestamp(kind.unit)).cast(pa.string())
        text = pc.binary_join_element_wise(naive, "Z", "")
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # quoted once per distinct value: tags repeat (three times faster on TSBS rows)
        values = pc.dictionary_encode(column.combine_chunks())
        quoted = pc.replace_substring(values.dictionary, '"', '""')
        text = pc.binary_join_element_wise('"', quoted, '"', "").take(values.indices)
    else:
        text = column.cast(pa.string())
    return pc.fill_null(text, "")


def database_digest(tables: list[TableDigest]) -> str:
    """SHA-256 over the table digests in table-name order."""
    combined = hashlib.sha256()
    for item in sorted(tables, key=lambda t: t.table):
        combined.update(f"{item.table}:{item.sha256}\n".encode())
    return combined.hexdigest()
