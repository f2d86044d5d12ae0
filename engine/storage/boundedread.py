"""The rows of a segment file within bounds (``[start, end)`` and tag values), decoding
as little as the bounds allow. The file's size and footer digest are checked by the
caller (:func:`engine.storage.segment.batches`) before this reads anything; every page
decoded here has its CRC checked.

How the row groups that hold a row within bounds are found:

- with a tag bound and a series index in the footer (:mod:`engine.storage.seriesindex`):
  the index gives each matching series' rows; the row groups holding them are decoded,
  the series' rows sliced out, and only a time bound is then tested, row by row;
- otherwise: the footer's statistics rule row groups out, the key columns of the rest
  (``ts`` and the bound's tags) are decoded and tested, and the row groups holding a
  row within bounds are decoded whole and filtered.

Tag columns are decoded as dictionaries: a tag value is looked for among a few, and the
rows a bound leaves out are dropped before any string is copied. Every dictionary code
of what is served (and of a column compared through its codes) is checked to name an
entry: a damaged page header can decode codes past the end, which a comparison of codes
would not notice.
"""

from __future__ import annotations

import functools
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from engine.arrowmods import pa, pc, pq
from engine.storage import seriesindex
from engine.storage.schema import TS

# Rows of key columns decoded at a time to find the row groups a bounded read needs.
_TEST_ROWS = 1 << 20


@dataclass(frozen=True)
class Within:
    """What a read is limited to: ``[start, end)`` in timestamp units, tag values."""

    start: int | None
    end: int | None
    where: dict[str, str]

    @property
    def timed(self) -> bool:
        return self.start is not None or self.end is not None

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
        return [TS, *self.where] if self.timed else list(self.where)


def rows_within(
    source: pa.NativeFile,
    reader: pq.ParquetFile,
    bounds: Within,
    batch_rows: int,
    read_rows: int,
    columns: list[str] | None,
    check: Callable[[pa.Table], None],
    dictionaries: bool = False,
) -> Iterator[pa.Table]:
    """The rows of the file ``reader`` reads (from ``source``) within ``bounds``, in
    batches of at most ``batch_rows``, decoding about ``read_rows`` rows at a time;
    ``check`` is given every table of decoded rows before it is served. With
    ``dictionaries``, string columns come dictionary-encoded (every code checked).

    Raises what pyarrow raises for bytes that do not decode, and ValueError for a
    column that ends early or an index that does not describe the file."""
    arrow_schema = reader.schema_arrow  # rebuilt at every access: read it once
    position = {name: i for i, name in enumerate(arrow_schema.names)}
    metadata = reader.metadata
    strings = [f.name for f in arrow_schema if pa.types.is_string(f.type)]
    if strings:
        reader = pq.ParquetFile(
            source, metadata=metadata, read_dictionary=strings, page_checksum_verification=True
        )
    sizes = [
        metadata.row_group(i).num_rows for i in range(metadata.num_rows and metadata.num_row_groups)
    ]
    series = None
    if bounds.where and sizes and all(tag in position for tag in bounds.where):
        series = seriesindex.series_rows(metadata.metadata, bounds.where, metadata.num_rows)
    if series is None:
        found = _tested(reader, metadata, sizes, position, bounds, read_rows, columns)
    else:
        timed = Within(bounds.start, bounds.end, {})
        found = _indexed(reader, metadata, sizes, position, timed, series, read_rows, columns)
    for rows in found:
        check(rows)
        rows = _checked_codes(rows)
        if not dictionaries:
            rows = plain_strings(rows)
        for offset in range(0, rows.num_rows, batch_rows):
            yield rows.slice(offset, batch_rows)


def _tested(
    reader: pq.ParquetFile,
    metadata: pq.FileMetaData,
    sizes: list[int],
    position: dict[str, int],
    bounds: Within,
    read_rows: int,
    columns: list[str] | None,
) -> Iterator[pa.Table]:
    """Rows within ``bounds`` found by statistics, then by decoding the key columns."""
    candidates = [
        i for i in range(len(sizes)) if not bounds.rule_out(metadata.row_group(i), position)
    ]
    keys = [k for k in bounds.key_columns() if k in position]
    for chunk in _runs_of(candidates, sizes, _TEST_ROWS):
        for read in _runs_of(_holding_rows(reader, chunk, keys, bounds, sizes), sizes, read_rows):
            rows = _decoded_groups(reader, read, sizes, columns)
            for column in bounds.where:  # compared through its codes: check them first
                rows.column(column).validate(full=True)
            yield rows.filter(_within(rows, bounds))


def _indexed(
    reader: pq.ParquetFile,
    metadata: pq.FileMetaData,
    sizes: list[int],
    position: dict[str, int],
    timed: Within,
    series: list[tuple[int, int]],
    read_rows: int,
    columns: list[str] | None,
) -> Iterator[pa.Table]:
    """The rows ``series`` (``[first, end)`` row ranges, in order) span within the time
    bound ``timed``: their row groups decoded, the ranges picked out and the time tested
    by one filter (a copy: a slice would keep the whole row groups alive)."""
    starts = [0, *accumulate(sizes)]
    groups = sorted(
        {
            group
            for first, end in series
            for group in range(bisect_right(starts, first) - 1, bisect_right(starts, end - 1))
        }
    )
    if timed.timed:
        groups = [g for g in groups if not timed.rule_out(metadata.row_group(g), position)]
    for read in _runs_of(groups, sizes, read_rows):
        rows = _decoded_groups(reader, read, sizes, columns)
        picked = _picked(read, starts, series)
        yield rows.filter(pc.and_(picked, _within(rows, timed)) if timed.timed else picked)


def _decoded_groups(
    reader: pq.ParquetFile, read: list[int], sizes: list[int], columns: list[str] | None
) -> pa.Table:
    rows = reader.read_row_groups(read, columns=columns).replace_schema_metadata(None)
    expected = sum(sizes[i] for i in read)
    if rows.num_rows != expected:  # a damaged page header can end a column early
        raise ValueError(f"row groups {read} decode {rows.num_rows} rows, not {expected}")
    return rows


def _picked(read: list[int], starts: list[int], series: list[tuple[int, int]]) -> pa.Array:
    """Which rows of the row groups ``read`` (which begin at ``starts``), laid end to
    end, are in the ``series`` ranges."""
    ends = [end for _, end in series]
    pieces, local, picked_up_to = [], 0, 0
    for group in read:
        low, high = starts[group], starts[group + 1]
        at = bisect_right(ends, low)  # the first range ending after the group's start
        while at < len(series) and series[at][0] < high:
            shift = local - low  # from a row's place in the file to its place in ``read``
            first, end = max(series[at][0], low) + shift, min(series[at][1], high) + shift
            pieces += [pa.repeat(False, first - picked_up_to), pa.repeat(True, end - first)]
            picked_up_to = end
            at += 1
        local += high - low
    pieces.append(pa.repeat(False, local - picked_up_to))
    return pa.concat_arrays(pieces)


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


def _runs_of(groups: list[int], sizes: list[int], rows: int) -> Iterator[list[int]]:
    """``groups`` in order, cut into lists of about ``rows`` rows (at least one group)."""
    run: list[int] = []
    held = 0
    for index in groups:
        if run and held + sizes[index] > rows:
            yield run
            run, held = [], 0
        run.append(index)
        held += sizes[index]
    if run:
        yield run


def _holding_rows(
    reader: pq.ParquetFile, groups: list[int], keys: list[str], bounds: Within, sizes: list[int]
) -> list[int]:
    """The row groups of ``groups`` with a row within ``bounds``, found by decoding their
    key columns only, all in one read."""
    tested = _checked_codes(reader.read_row_groups(groups, columns=keys))
    ends = list(accumulate(sizes[i] for i in groups))
    if ends[-1] != tested.num_rows:  # a damaged page header can end a column early
        raise ValueError(f"key columns decode {tested.num_rows} rows, not {ends[-1]}")
    found = pc.indices_nonzero(_within(tested, bounds)).to_pylist()
    return sorted({groups[bisect_right(ends, row)] for row in found})


def _within(rows: pa.Table, bounds: Within) -> pa.ChunkedArray:
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
    """``rows`` once every dictionary code is known to name a dictionary entry."""
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


def lean(rows: pa.Table) -> pa.Table:
    """``rows``, their strings decoded now if their dictionaries hold many more values
    than they have rows: a few rows kept for later must not keep a row group's whole
    dictionary alive (a tag of many values, a bound on another tag)."""
    values = sum(
        len(chunk.dictionary)
        for column in rows.columns
        if pa.types.is_dictionary(column.type)
        for chunk in column.chunks
    )
    return plain_strings(rows) if values > 4 * rows.num_rows + 256 else rows


def plain_strings(rows: pa.Table) -> pa.Table:
    """``rows`` with dictionary-encoded columns decoded to their values: a cast per
    column, whatever its number of chunks."""
    if not any(pa.types.is_dictionary(f.type) for f in rows.schema):
        return rows
    columns, fields = [], []
    for field, column in zip(rows.schema, rows.columns, strict=True):
        if pa.types.is_dictionary(field.type):
            field = field.with_type(field.type.value_type)
            column = column.cast(field.type)
        columns.append(column)
        fields.append(field)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
