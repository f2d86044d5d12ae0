"""Table schemas: a timestamp column ``ts``, string tag columns, typed field columns."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.arrowmods import pa
from engine.errors import InvalidArgument, SchemaConflict
from engine.names import validate_name

TS = "ts"
# type name -> the pyarrow factory of its Arrow type; resolved when first asked, since
# pyarrow itself is imported on first use (engine/arrowmods.py)
_FACTORIES = {
    "float64": "float64",
    "int64": "int64",
    "uint64": "uint64",
    "bool": "bool_",
    "string": "string",
}


class _FieldTypes(Mapping[str, "pa.DataType"]):
    """The Arrow type of each field type name."""

    def __getitem__(self, name: str) -> pa.DataType:
        factory: Callable[[], pa.DataType] = getattr(pa, _FACTORIES[name])
        return factory()

    def __iter__(self) -> Iterator[str]:
        return iter(_FACTORIES)

    def __len__(self) -> int:
        return len(_FACTORIES)


FIELD_TYPES: Mapping[str, pa.DataType] = _FieldTypes()


@functools.cache
def _name_of_printed_type() -> dict[str, str]:
    """How each Arrow type prints (``double``, ``int64``...), back to its type name."""
    return {str(kind): name for name, kind in FIELD_TYPES.items()}


def ts_type(precision: str) -> pa.DataType:
    return pa.timestamp(precision, tz="UTC")


def field_type_name(arrow_type: pa.DataType) -> str:
    if pa.types.is_large_string(arrow_type) or pa.types.is_dictionary(arrow_type):
        return "string"
    name = _name_of_printed_type().get(str(arrow_type))
    if name is None:
        raise InvalidArgument(f"unsupported field type {arrow_type}")
    return name


@dataclass
class TableSchema:
    """Tags and fields, each kept sorted by name: the column order of every file written for
    the table is then the same whatever order the columns first arrived in (JSON with sorted
    keys, as the manifest is written, keeps it too)."""

    tags: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tags = sorted(self.tags)
        self.fields = dict(sorted(self.fields.items()))

    def to_json(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "fields": dict(self.fields)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableSchema:
        return cls(tags=list(data.get("tags", [])), fields=dict(data.get("fields", {})))

    def copy(self) -> TableSchema:
        return TableSchema(list(self.tags), dict(self.fields))

    def column_names(self) -> list[str]:
        return [TS, *self.tags, *self.fields]

    def arrow_schema(self, precision: str) -> pa.Schema:
        columns = [pa.field(TS, ts_type(precision), nullable=False)]
        columns += [pa.field(tag, pa.string()) for tag in self.tags]
        columns += [pa.field(name, FIELD_TYPES[kind]) for name, kind in self.fields.items()]
        return pa.schema(columns)

    def grown_by(self, table: str, tags: list[str], fields: dict[str, str]) -> TableSchema | None:
        """The schema with new tags/fields added, ``None`` if nothing is new.

        Raises :class:`SchemaConflict` if a field arrives with another type, or
        a name is used both as a tag and as a field.
        """
        grown = self.copy()
        known_tags = set(self.tags)  # sets: a line may carry thousands of keys
        for tag in tags:
            if tag in self.fields:
                raise SchemaConflict(f"table {table}: {tag!r} is a field, not a tag")
            if tag not in known_tags:
                _check_column_name("tag", tag)
                grown.tags.append(tag)
                known_tags.add(tag)
        for name, kind in fields.items():
            if name in known_tags:
                raise SchemaConflict(f"table {table}: {name!r} is a tag, not a field")
            stored = grown.fields.get(name)
            if stored is None:
                _check_column_name("field", name)
                grown.fields[name] = kind
            elif stored != kind:
                raise SchemaConflict(
                    f"table {table}: field {name!r} is {stored}, the write has {kind}",
                    hint=f"write {name!r} as {stored}, or into a new field name",
                )
        grown = TableSchema(grown.tags, grown.fields)  # back in canonical order
        changed = grown.tags != self.tags or grown.fields != self.fields
        return grown if changed else None


def _check_column_name(kind: Literal["tag", "field"], name: str) -> None:
    if name == TS:
        raise InvalidArgument(f"{kind} name {name!r} is reserved for the timestamp")
    validate_name(kind, name)


def split_columns(rows: pa.Table) -> tuple[list[str], dict[str, str]]:
    """Tags (string columns marked as tags) and fields of a batch, from its metadata:
    ``tags`` is a JSON list of the tag columns (before 0.3, when names could hold no
    comma, a comma-separated list; a JSON list starts with ``[``, which no old name did)."""
    meta = rows.schema.metadata or {}
    marked = meta.get(b"tags", b"").decode()
    legacy = not marked.startswith("[")
    tag_names = set(marked.split(",")) - {""} if legacy else set(json.loads(marked))
    tags = [name for name in rows.column_names if name in tag_names]
    fields = {
        col.name: field_type_name(col.type)
        for col in rows.schema
        if col.name != TS and col.name not in tag_names
    }
    return tags, fields


def mark_tags(rows: pa.Table, tags: list[str]) -> pa.Table:
    """Record which columns are tags in the batch's schema metadata."""
    return rows.replace_schema_metadata({"tags": json.dumps(tags)})


def conform(rows: pa.Table, schema: TableSchema, precision: str) -> pa.Table:
    """Cast/extend a batch to the table's full schema (missing columns become null)."""
    target = schema.arrow_schema(precision)
    present = {name: i for i, name in enumerate(rows.column_names)}
    columns = []
    for column in target:
        if column.name in present:
            values = rows.column(present[column.name])
            if pa.types.is_dictionary(values.type):
                values = values.cast(pa.string())
            columns.append(values if values.type == column.type else values.cast(column.type))
        else:
            columns.append(pa.nulls(rows.num_rows, column.type))
    return pa.Table.from_arrays(columns, schema=target)
