"""The tables of an open database: their schemas, how a write grows them, dropping one.

A schema only grows (a new tag, a new field; a field's type never changes): a write
that brings new columns logs a DDL record for each table it grows, in the same
append as its rows and before them, so replay meets the schema before the data.
"""

from __future__ import annotations

from typing import Any

from engine.arrowmods import pa
from engine.db.core import Core
from engine.errors import NotFound
from engine.names import validate_name
from engine.storage.schema import TableSchema, split_columns


def schema(core: Core, table: str) -> TableSchema:
    found = core.catalog.get(table)
    if found is None:
        raise NotFound(f"table {table} does not exist in database {core.name}")
    return found.copy()


def schema_changes(
    core: Core, prepared: list[tuple[str, pa.Table, list[str]]]
) -> list[dict[str, Any]]:
    """The DDL changes (one per table) a write of ``prepared`` rows needs first."""
    pending: dict[str, TableSchema] = {}
    for table, rows, tags in prepared:
        current = pending.get(table) or core.catalog.get(table) or TableSchema()
        _tags, fields = split_columns(rows)
        grown = current.grown_by(table, tags, fields)
        if grown is not None:
            pending[table] = grown
    return [{"op": "table", "table": t, **s.to_json()} for t, s in pending.items()]


def drop_table(core: Core, table: str) -> None:
    """Drop a table from the catalog and the memtables (logged); its files go at the
    next checkpoint, which the caller runs."""
    validate_name("table", table)
    schema(core, table)
    with core.write_lock:
        core.log_ddl({"op": "drop_table", "table": table})
        del core.catalog[table]
        for memtable in core.memtables:
            memtable.drop(table)
        core.hidden.add(table)
