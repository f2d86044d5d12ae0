"""Upsert merge: InfluxDB's rule, vectorised.

Rows are keyed by (tag set, ts). When several rows share a key, the later row
overwrites the fields it carries and leaves the others: per key and field, the
last non-null value wins. The input order is the write order (older batches
and segments first), which pyarrow's single-threaded hash aggregation keeps.
"""

from __future__ import annotations

from collections.abc import Iterator

from engine.arrowmods import pa, pc
from engine.storage.schema import TS, TableSchema, conform


def upsert_merge(batches: list[pa.Table], schema: TableSchema, precision: str) -> pa.Table:
    """Merge ``batches`` (oldest first) into unique keys, sorted by tags then ``ts``."""
    whole = next(upsert_merged(batches, schema, precision), None)  # no piece size: one
    return whole if whole is not None else schema.arrow_schema(precision).empty_table()


def upsert_merged(
    batches: list[pa.Table], schema: TableSchema, precision: str, piece_rows: int | None = None
) -> Iterator[pa.Table]:
    """:func:`upsert_merge`'s rows in pieces of at most ``piece_rows`` (None: one).

    Where no key repeats (new points: the usual case), each piece is gathered from the
    batches as it is asked for, so a writer that takes them one at a time never holds
    the whole sorted copy beside the batches (a checkpoint of a 64 MB memtable: 68 MB
    less at its peak). Where keys repeat, the merge is made whole first."""
    target = schema.arrow_schema(precision)
    tables = [conform(b, schema, precision) for b in batches if b.num_rows]
    if not tables:
        return
    # left in chunks: a gather from them makes the sorted rows without a combined copy
    combined = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    keys = _sort_keys(combined, schema)
    order = pc.sort_indices(keys, sort_keys=_ascending(keys))
    repeats = _has_adjacent_duplicates(keys.take(order))
    del keys
    if repeats:
        merged = _last_values(combined, schema, target)
        step = piece_rows or max(1, merged.num_rows)
        yield from (merged.slice(start, step) for start in range(0, merged.num_rows, step))
        return
    step = piece_rows or max(1, len(order))
    for start in range(0, len(order), step):
        yield combined.take(order.slice(start, step)).combine_chunks()


def _last_values(combined: pa.Table, schema: TableSchema, target: pa.Schema) -> pa.Table:
    """One row per key, each field its last non-null value in input order; sorted."""
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
        less, same = pc.less(here, after), pc.equal(here, after)
        if here.null_count or after.null_count:
            # a null tag sorts first: smaller than any value, equal to a null
            less = pc.or_(pc.fill_null(less, False), pc.and_(pc.is_null(here), pc.is_valid(after)))
            same = pc.or_(pc.fill_null(same, False), pc.and_(pc.is_null(here), pc.is_null(after)))
        step = pc.or_(less, same) if ordered is None else pc.or_(less, pc.and_(same, ordered))
        ordered = step
    assert ordered is not None
    return ordered


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
