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
from dataclasses import dataclass

from engine.arrowmods import pa, pacsv, pc
from engine.storage.schema import TS, TableSchema

_BATCH = 65536


@dataclass
class TableDigest:
    table: str
    rows: int
    sha256: str


def table_digest(name: str, rows: pa.Table, schema: TableSchema) -> TableDigest:
    tags = sorted(t for t in schema.tags if rows.column(t).null_count < rows.num_rows)
    fields = sorted(f for f in schema.fields if rows.column(f).null_count < rows.num_rows)
    canonical = rows.select([TS, *tags, *fields])
    order = [(t, "ascending", "at_start") for t in tags] + [(TS, "ascending", "at_start")]
    canonical = canonical.take(pc.sort_indices(canonical, sort_keys=order))
    digest = hashlib.sha256()
    digest.update(name.encode() + b"\n" + str(canonical.schema.remove_metadata()).encode() + b"\n")
    for start in range(0, canonical.num_rows, _BATCH):
        chunk = canonical.slice(start, _BATCH)
        out = io.BytesIO()
        pacsv.write_csv(chunk, out, pacsv.WriteOptions(include_header=False))
        digest.update(out.getvalue())
    return TableDigest(name, rows.num_rows, digest.hexdigest())


def database_digest(tables: list[TableDigest]) -> str:
    """SHA-256 over the table digests in table-name order."""
    combined = hashlib.sha256()
    for item in sorted(tables, key=lambda t: t.table):
        combined.update(f"{item.table}:{item.sha256}\n".encode())
    return combined.hexdigest()
