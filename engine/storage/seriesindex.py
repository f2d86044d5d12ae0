"""The series index of a segment file: where each series' rows lie, kept in the file's
Parquet footer so that a read of a few series decodes no tag column to find them.

A segment's rows are unique by (tags, ts) and sorted by them, so each series (one
combination of tag values) is one run of consecutive rows. The index lists the runs.

Byte format: an entry of the Parquet footer's key-value metadata.

- key: ``tsadmin.series.v1`` (ASCII);
- value: the standard base64 text (RFC 4648, padded) of an Arrow IPC stream: the
  schema message, one record batch, the end-of-stream marker, buffers compressed with
  zstd frames. The batch has one row per series, in file order, and the columns:

  - each tag column of the file, in the file's order (``string``, a null tag null);
  - ``first_row`` (``int64``): the series' first row in the file. The first series
    starts at 0 and the values increase strictly; a series runs up to the next one's
    first row, the last one to the end of the file.

The index is written only for a file with at least :data:`ROWS_PER_SERIES` rows per
series on average: below that a row group holds so many series that the tag column
costs little to test, and the index would cost more footer than it saves. A file
without the entry (written before the index, or with many series) is read the old way.

It sits in the footer, so the footer's digest (``segment.footer_digest``, in the
manifest) covers it: a damaged index is reported as a damaged footer, never used.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from engine.arrowmods import pa, pc
from engine.storage.mergescan import series_at, series_starts

KEY = b"tsadmin.series.v1"
FIRST_ROW = "first_row"
ROWS_PER_SERIES = 8


class Builder:
    """The index of a file whose sorted rows are given batch by batch, in file order."""

    def __init__(self, tags: list[str]) -> None:
        self.tags = tags
        self._pieces: list[pa.Table] = []
        self._rows = 0
        self._series = 0
        self._last: object = None  # the series of the last row seen

    def add(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        present = [t for t in self.tags if t in rows.column_names]
        self._rows += rows.num_rows
        if not present:  # one series: a tag bound finds it by the footer's statistics
            return
        offset = self._rows - rows.num_rows
        rows = rows.select(present)
        starts = series_starts(rows, present)
        first, last = series_at(rows, [0, rows.num_rows - 1], present)
        if first == self._last:  # the batch continues the previous one's last series
            starts = starts[1:]
        self._last = last
        if starts:
            at = pa.array(starts, pa.int64())
            piece = rows.take(at).append_column(FIRST_ROW, pc.add(at, offset))
            self._pieces.append(piece)
            self._series += len(starts)

    def metadata(self) -> dict[bytes, bytes]:
        """The footer entry, or nothing when the file has too many series for it."""
        if not self._series or self._series * ROWS_PER_SERIES > self._rows:
            return {}
        index = pa.concat_tables(self._pieces).combine_chunks()
        sink = pa.BufferOutputStream()
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_stream(sink, index.schema, options=options) as writer:
            writer.write_table(index)
        return {KEY: base64.b64encode(sink.getvalue().to_pybytes())}


def series_rows(
    footer: Mapping[bytes, bytes] | None, where: Mapping[str, str], total_rows: int
) -> list[tuple[int, int]] | None:
    """The rows (``[first, end)`` ranges, in order, neighbours joined) of the series
    whose tags equal ``where``, in a file of ``total_rows`` rows whose footer entries
    are ``footer``; None when it has no index, or one without a tag of ``where``.

    Raises ValueError for an index that does not describe the file's rows in order."""
    encoded = (footer or {}).get(KEY)
    if encoded is None:
        return None
    index = pa.ipc.open_stream(base64.b64decode(encoded, validate=True)).read_all()
    if any(tag not in index.column_names for tag in where):
        return None
    first = index.column(FIRST_ROW).cast(pa.int64())
    _check_order(first, total_rows)
    matched = None
    for tag, value in where.items():
        equal = pc.fill_null(pc.equal(index.column(tag), value), False)
        matched = equal if matched is None else pc.and_(matched, equal)
    starts = [*first.to_pylist(), total_rows]
    ranges: list[tuple[int, int]] = []
    for series in pc.indices_nonzero(matched).to_pylist() if matched is not None else ():
        low, high = starts[series], starts[series + 1]
        if ranges and ranges[-1][1] == low:
            ranges[-1] = (ranges[-1][0], high)
        else:
            ranges.append((low, high))
    return ranges


def _check_order(first: pa.ChunkedArray, total_rows: int) -> None:
    count = len(first)
    if not count:
        raise ValueError("the series index lists no series")
    if first[0].as_py() != 0 or first[count - 1].as_py() >= total_rows:
        raise ValueError(f"the series index does not span the file's {total_rows} rows")
    if count > 1 and not pc.all(pc.less(first.slice(0, count - 1), first.slice(1))).as_py():
        raise ValueError("the series index is out of order")
