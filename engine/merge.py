"""Upsert merge: InfluxDB's rule, vectorised.

Rows are keyed by (tag set, ts). When several rows share a key, the later row
overwrites the fields it carries and leaves the others: per key and field, the
last non-null value wins. The input order is the write order (older batches
and segments first), which pyarrow's single-threaded hash aggregation keeps.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from engine.schema import TS, TableSchema, conform


def upsert_merge(batches: list[pa.Table], schema: TableSchema, precision: str) -> pa.Table:
    """Merge ``batches`` (oldest first) into unique keys, sorted by tags then ``ts``."""
    target = schema.arrow_schema(precision)
    tables = [conform(b, schema, precision) for b in batches if b.num_rows]
    if not tables:
        return target.empty_table()
    combined = (pa.concat_tables(tables) if len(tables) > 1 else tables[0]).combine_chunks()
    keys = _sort_keys(combined, schema)
    order = pc.sort_indices(keys, sort_keys=_ascending(keys))
    if not _has_adjacent_duplicates(keys.take(order)):
        return combined.take(order)
    aggregated = combined.group_by([*schema.tags, TS], use_threads=False).aggregate(
        [(name, "last") for name in schema.fields]
    )
    renamed = aggregated.rename_columns(
        [
            name[: -len("_last")] if name.endswith("_last") else name
            for name in aggregated.column_names
        ]
    )
    return sort_rows(renamed.select(target.names).cast(target), schema)


def sort_rows(table: pa.Table, schema: TableSchema) -> pa.Table:
    """``table`` sorted by its tags (nulls first) then ``ts``."""
    table = table.combine_chunks()
    keys = _sort_keys(table, schema)
    return table.take(pc.sort_indices(keys, sort_keys=_ascending(keys)))


def is_sorted(rows: pa.Table, tags: list[str]) -> bool:
    """Whether ``rows`` are in segment order: by ``tags`` (nulls first) then ``ts``.

    Each row is compared with the next, column by column from the last key to the
    first (``row <= next`` iff the first differing key is smaller): linear, no sort."""
    n = rows.num_rows
    if n < 2:
        return True
    return bool(pc.all(_rows_le(rows.slice(0, n - 1), rows.slice(1), tags)).as_py())


def _rows_le(left: pa.Table, right: pa.Table, tags: list[str]) -> pa.Array:
    """Per position, whether ``left``'s key is at most ``right``'s (segment order)."""
    ordered = None  # "the keys from this column on are <= the other row's"
    for name in [TS, *reversed(tags)]:
        here = left.column(name).combine_chunks()
        after = right.column(name).combine_chunks()
        if name == TS:
            here, after = here.cast(pa.int64()), after.cast(pa.int64())
        # a null tag sorts first: treat it as smaller than any value, equal to a null
        less = pc.fill_null(pc.less(here, after), False)
        less = pc.or_(less, pc.and_(pc.is_null(here), pc.is_valid(after)))
        same = pc.fill_null(pc.equal(here, after), False)
        same = pc.or_(same, pc.and_(pc.is_null(here), pc.is_null(after)))
        step = pc.or_(less, same) if ordered is None else pc.or_(less, pc.and_(same, ordered))
        ordered = step
    assert ordered is not None
    return ordered


def is_sorted_runs(rows: pa.Table, tags: list[str], before: pa.Table | None) -> bool:
    """:func:`is_sorted` for rows whose tags are dictionary-encoded with one dictionary
    per column (a Parquet row group read with ``read_dictionary``), in time linear in the
    rows and the series: a row whose tags' indices equal the next row's is in the same
    series, where only ``ts`` may not fall; the few rows where the series changes are
    compared by value. ``before``: the key of the row just before these (a one-row
    table, :func:`last_key`), or None."""
    n = rows.num_rows
    if n == 0:
        return True
    columns = [_one_chunk(rows.column(t)) for t in tags]
    ts = _one_chunk(rows.column(TS)).cast(pa.int64())
    changes: list[int] = []
    if n > 1:
        same = _same_series_as_next(columns, n)
        rising = pc.less_equal(ts.slice(0, n - 1), ts.slice(1))
        within = rising if same is None else pc.or_(pc.invert(same), rising)
        if not pc.all(within).as_py():
            return False
        if same is not None:
            changes = pc.indices_nonzero(pc.invert(same)).to_pylist()

    def rows_at(at: pa.Array) -> pa.Table:
        picked = {t: _plain(c.take(at)) for t, c in zip(tags, columns, strict=True)}
        return pa.table({**picked, TS: ts.take(at)})

    if before is not None and not _rows_le(before, rows_at(pa.array([0])), tags)[0].as_py():
        return False
    if not changes:
        return True
    at = pa.array(changes, pa.int64())
    return bool(pc.all(_rows_le(rows_at(at), rows_at(pc.add(at, 1)), tags)).as_py())


def _same_series_as_next(columns: list[pa.Array], n: int) -> pa.Array | None:
    """Per row but the last, whether every column (dictionary indices where encoded)
    equals the next row's; None without columns."""
    same = None
    for column in columns:
        values = column.indices if pa.types.is_dictionary(column.type) else column
        here, after = values.slice(0, n - 1), values.slice(1)
        equal = pc.fill_null(pc.equal(here, after), False)
        if values.null_count:
            equal = pc.or_(equal, pc.and_(pc.is_null(here), pc.is_null(after)))
        same = equal if same is None else pc.and_(same, equal)
    return same


def last_key(rows: pa.Table, tags: list[str]) -> pa.Table | None:
    """The key of the last row, as a one-row table (for :func:`is_sorted_runs`)."""
    if rows.num_rows == 0:
        return None
    tail = rows.slice(rows.num_rows - 1)
    plain = {t: _plain(tail.column(t).combine_chunks()) for t in tags}
    return pa.table({**plain, TS: tail.column(TS).combine_chunks().cast(pa.int64())})


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array (a row group read whole is one chunk: no copy then)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _plain(column: pa.Array) -> pa.Array:
    """A dictionary column as its values (comparisons need the values themselves)."""
    if pa.types.is_dictionary(column.type):
        return column.dictionary_decode()
    return column


def _sort_keys(table: pa.Table, schema: TableSchema) -> pa.Table:
    """Integer columns that sort like the tags, then ``ts``: each tag value replaced by its
    rank among the column's distinct values (1 up; a null is 0, so it sorts first). Sorting
    these is several times faster than comparing strings."""
    columns: dict[str, pa.Array] = {}
    for position, tag in enumerate(schema.tags):
        encoded = pc.dictionary_encode(table[tag].combine_chunks())
        ranks = pc.rank(encoded.dictionary, sort_keys="ascending", tiebreaker="dense")
        columns[f"t{position}"] = pc.fill_null(pc.take(ranks, encoded.indices), 0)
    columns[TS] = table[TS].combine_chunks().cast(pa.int64())
    return pa.table(columns)


def _ascending(keys: pa.Table) -> list[tuple[str, str]]:
    return [(name, "ascending") for name in keys.column_names]


def _has_adjacent_duplicates(ordered_keys: pa.Table) -> bool:
    """Whether two neighbours of the sorted keys are equal (the keys hold no nulls)."""
    rows = ordered_keys.num_rows
    if rows < 2:
        return False
    same = None
    for column in ordered_keys.columns:
        equal = pc.equal(column.slice(0, rows - 1), column.slice(1))
        same = equal if same is None else pc.and_(same, equal)
    return bool(pc.any(same).as_py())


def duplicate_keys(rows: pa.Table, tags: list[str]) -> int:
    """How many rows of ``rows`` repeat the key (tags, ts) of an earlier row: what an
    upsert of them overwrites among themselves. A missing tag column is a null tag.

    The keys are sorted (``ts`` first) and neighbours compared a column at a time,
    stopping as soon as no two neighbours can be equal: usually after two columns."""
    n = rows.num_rows
    if n < 2:
        return 0
    present = set(rows.column_names)
    names = [TS, *(t for t in tags if t in present and rows.column(t).null_count < n)]
    keys = rows.select(names)
    order = pc.sort_indices(keys, sort_keys=[(k, "ascending", "at_start") for k in names])
    same = None
    for name in names:
        column = keys.column(name).take(order)
        here, after = column.slice(0, n - 1), column.slice(1)
        equal = pc.equal(here, after)
        if column.null_count:
            both_null = pc.and_(pc.is_null(here), pc.is_null(after))
            equal = pc.or_(pc.fill_null(equal, False), both_null)
        same = equal if same is None else pc.and_(same, equal)
        if not pc.any(same).as_py():
            return 0
    return int(pc.sum(same).as_py() or 0)
