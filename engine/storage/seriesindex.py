"""The series index of a segment file: where each series' rows lie, kept in the file's
Parquet footer so that a read of a few series decodes no tag column to find them.

A segment's rows are unique by (tags, ts) and sorted by them, so each series (one
combination of tag values) is one run of consecutive rows. The index lists the runs.

Byte format: an entry of the Parquet footer's key-value metadata.

- key: ``tsadmin.series.v1`` (ASCII);
- value: the standard base64 text (RFC 4648, padded) of one zstd frame (with its
  content size) whose content is, for ``S`` series and ``T`` tags:

  - a JSON object (UTF-8, no NUL byte: JSON escapes it in strings):
    ``{"rows": R, "series": S, "tags": [[name, [value, ...]], ...]}``: the file's row
    count, and per tag of the file, in the file's column order, its distinct values
    (a string, or null for rows without the tag), each once, in any order;
  - one NUL byte (0x00);
  - ``S`` little-endian signed 64-bit integers: each series' first row, in file order.
    The first is 0 and they increase strictly; a series runs up to the next one's
    first row, the last one up to ``R``;
  - for each tag, in the JSON's order: ``S`` little-endian unsigned 32-bit integers,
    each series' value of that tag as a position in the tag's list of values.

The index is written only for a file with at least :data:`ROWS_PER_SERIES` rows per
series on average: below that a row group holds so many series that the tag column
costs little to test, and the index would cost more footer than it saves. A file
without the entry (written before the index, or with many series) is read the old way.

It sits in the footer, so the footer's digest (``segment.footer_digest``, in the
manifest) covers it: a damaged index is reported as a damaged footer, never used.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from array import array
from collections.abc import Mapping
from itertools import compress, islice
from operator import lt
from typing import Any

import zstandard

from engine.arrowmods import pa
from engine.storage.mergescan import series_at, series_starts

KEY = b"tsadmin.series.v1"
ROWS_PER_SERIES = 8
_LITTLE = sys.byteorder == "little"
_LOCAL = threading.local()  # a zstd context serves one thread at a time


class Builder:
    """The index of a file whose sorted rows are given batch by batch, in file order."""

    def __init__(self, tags: list[str]) -> None:
        self.tags = tags
        self._present: list[str] | None = None  # the tags of the file, in its column order
        self._values: dict[str, dict[str | None, int]] = {}
        self._codes: dict[str, array[int]] = {}
        self._first = array("q")
        self._rows = 0
        self._last: object = None  # the series of the last row seen

    def add(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        offset = self._rows
        self._rows += rows.num_rows
        if self._present is None:
            wanted = set(self.tags)
            self._present = [c for c in rows.column_names if c in wanted]
            self._values = {tag: {} for tag in self._present}
            self._codes = {tag: array("I") for tag in self._present}
        if not self._present:  # one series: a tag bound finds it by the footer's statistics
            return
        starts = series_starts(rows, self._present)
        first, last = series_at(rows, [0, rows.num_rows - 1], self._present)
        if first == self._last:  # the batch continues the previous one's last series
            starts = starts[1:]
        self._last = last
        if not starts:
            return
        self._first.extend(offset + start for start in starts)
        at = pa.array(starts, pa.int64())
        for tag in self._present:
            known, codes = self._values[tag], self._codes[tag]
            for value in rows.column(tag).take(at).to_pylist():
                codes.append(known.setdefault(value, len(known)))

    def metadata(self) -> dict[bytes, bytes]:
        """The footer entry, or nothing when the file has too many series for it."""
        series = len(self._first)
        if not series or series * ROWS_PER_SERIES > self._rows or not self._present:
            return {}
        header = {
            "rows": self._rows,
            "series": series,
            "tags": [[tag, list(self._values[tag])] for tag in self._present],
        }
        parts = [json.dumps(header, ensure_ascii=False).encode(), b"\0"]
        parts += [_little(self._first), *(_little(self._codes[t]) for t in self._present)]
        frame = zstandard.ZstdCompressor(level=3).compress(b"".join(parts))
        return {KEY: base64.b64encode(frame)}


def series_rows(
    footer: Mapping[bytes, bytes] | None, where: Mapping[str, str], total_rows: int
) -> list[tuple[int, int]] | None:
    """The rows (``[first, end)`` ranges, in order, neighbours joined) of the series
    whose tags equal ``where``, in a file of ``total_rows`` rows whose footer entries
    are ``footer``; None when it has no index, or one without a tag of ``where``.

    Raises ValueError for an index that does not describe the file's rows in order."""
    decoded = _decoded(footer, total_rows)
    if decoded is None:
        return None
    header, table = decoded
    series = header["series"]
    tags = {name: (i, values) for i, (name, values) in enumerate(header["tags"])}
    if len(tags) != len(header["tags"]):
        raise ValueError("the series index names a tag twice")
    if any(tag not in tags for tag in where):
        return None
    first = _read(array("q"), table[: 8 * series])
    _check_order(first, total_rows)
    matched: set[int] | None = None
    for tag, value in where.items():
        position, values = tags[tag]
        if value not in values:
            return []
        code = values.index(value)
        start = 8 * series + 4 * series * position
        codes = _read(array("I"), table[start : start + 4 * series])
        hits = set(compress(range(series), map(code.__eq__, codes)))
        matched = hits if matched is None else matched & hits
    starts = [*first, total_rows]
    ranges: list[tuple[int, int]] = []
    for index in sorted(matched or ()):
        low, high = starts[index], starts[index + 1]
        if ranges and ranges[-1][1] == low:
            ranges[-1] = (ranges[-1][0], high)
        else:
            ranges.append((low, high))
    return ranges


def first_series(
    footer: Mapping[bytes, bytes] | None, total_rows: int
) -> dict[str, str | None] | None:
    """The tag values of the first series of a file of ``total_rows`` rows whose footer
    entries are ``footer`` (a tag of the table the file lacks is null in every row and
    absent here); None when it has no index.

    Raises ValueError for an index that does not describe the file's rows."""
    decoded = _decoded(footer, total_rows)
    if decoded is None:
        return None
    header, table = decoded
    series = header["series"]
    if series < 1:
        raise ValueError("the series index lists no series")
    out: dict[str, str | None] = {}
    for position, (name, values) in enumerate(header["tags"]):
        start = 8 * series + 4 * series * position
        (code,) = _read(array("I"), table[start : start + 4])
        if code >= len(values):
            raise ValueError("the series index names a tag value it does not list")
        out[name] = values[code]
    return out


def _decoded(
    footer: Mapping[bytes, bytes] | None, total_rows: int
) -> tuple[dict[str, Any], bytes] | None:
    """The index's JSON header and its table of integers, checked against the file's
    row count; None when the footer has no index."""
    encoded = (footer or {}).get(KEY)
    if encoded is None:
        return None
    try:
        body = _decompressor().decompress(base64.b64decode(encoded, validate=True))
    except zstandard.ZstdError as exc:
        raise ValueError(f"the series index does not decompress ({exc})") from exc
    text, _, table = body.partition(b"\0")
    header = json.loads(text)
    rows, series = header["rows"], header["series"]
    if rows != total_rows or len(table) != 8 * series + 4 * series * len(header["tags"]):
        raise ValueError(f"the series index does not describe the file's {total_rows} rows")
    return header, table


def _decompressor() -> zstandard.ZstdDecompressor:
    context: zstandard.ZstdDecompressor | None = getattr(_LOCAL, "dctx", None)
    if context is None:
        context = _LOCAL.dctx = zstandard.ZstdDecompressor()
    return context


def _check_order(first: array[int], total_rows: int) -> None:
    if not first or first[0] != 0 or first[-1] >= total_rows:
        raise ValueError(f"the series index does not span the file's {total_rows} rows")
    if not all(map(lt, first, islice(first, 1, None))):
        raise ValueError("the series index is out of order")


def _little(values: array[int]) -> bytes:
    if _LITTLE:
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def _read(into: array[int], data: bytes) -> array[int]:
    into.frombytes(data)
    if not _LITTLE:
        into.byteswap()
    return into
