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
    combined = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    keys = [*schema.tags, TS]
    if not _has_duplicate_keys(combined, keys):
        return sort_rows(combined, schema)
    aggregated = combined.group_by(keys, use_threads=False).aggregate(
        [(name, "last") for name in schema.fields]
    )
    renamed = aggregated.rename_columns(
        [
            name[: -len("_last")] if name.endswith("_last") else name
            for name in aggregated.column_names
        ]
    )
    return sort_rows(renamed.select(target.names).cast(target), schema)


def _has_duplicate_keys(table: pa.Table, keys: list[str]) -> bool:
    if table.num_rows < 2:
        return False
    distinct = table.group_by(keys, use_threads=False).aggregate([]).num_rows
    return bool(distinct != table.num_rows)


def sort_rows(table: pa.Table, schema: TableSchema) -> pa.Table:
    order = [(tag, "ascending", "at_start") for tag in schema.tags] + [
        (TS, "ascending", "at_start")
    ]
    indices = pc.sort_indices(table, sort_keys=order)
    return table.take(indices)
