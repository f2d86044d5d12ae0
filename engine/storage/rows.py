"""Normalising incoming rows to the engine's column types, and filtering rows."""

from __future__ import annotations

from engine.arrowmods import pa, pc
from engine.errors import InvalidArgument
from engine.names import validate_name
from engine.settings import UNITS_PER_SECOND
from engine.storage.schema import FIELD_TYPES, TS, mark_tags, ts_type


def normalize_rows(
    table: str, rows: pa.Table, tags: list[str], precision: str
) -> tuple[str, pa.Table, list[str]]:
    """Check names and cast columns: ``ts`` to a UTC timestamp, tags to strings, fields
    to float64/int64/uint64/bool/string. Columns that are entirely null are dropped."""
    validate_name("table", table)
    present = set(rows.column_names)  # sets: a line may carry thousands of keys
    if TS not in present:
        raise InvalidArgument(f"rows for table {table} have no {TS!r} column")
    missing = [t for t in tags if t not in present]
    if missing:
        raise InvalidArgument(f"rows for table {table} lack tag column(s) {', '.join(missing)}")
    columns, names = [_timestamps(table, rows.column(TS), precision)], [TS]
    for tag in tags:
        values = rows.column(tag)
        if values.null_count == len(values):
            continue
        columns.append(values if values.type == pa.string() else values.cast(pa.string()))
        names.append(tag)
    tag_set = set(tags)
    for name in rows.column_names:
        if name == TS or name in tag_set:
            continue
        values = rows.column(name)
        if pa.types.is_null(values.type) or values.null_count == len(values):
            continue
        columns.append(_field(table, name, values))
        names.append(name)
    kept = set(names)
    kept_tags = [t for t in tags if t in kept]
    return table, mark_tags(pa.Table.from_arrays(columns, names=names), kept_tags), kept_tags


def _timestamps(table: str, values: pa.ChunkedArray, precision: str) -> pa.ChunkedArray:
    if values.null_count:
        raise InvalidArgument(f"rows for table {table} have rows without a timestamp")
    target = ts_type(precision)
    if pa.types.is_integer(values.type):
        return values.cast(pa.int64()).cast(target)
    if pa.types.is_timestamp(values.type):
        try:
            return values.cast(target)
        except pa.ArrowInvalid as exc:
            raise InvalidArgument(
                f"table {table}: timestamps finer than the database precision {precision}",
                hint="create the database with a finer precision",
            ) from exc
    raise InvalidArgument(f"table {table}: column {TS!r} has type {values.type}, not a time")


def _field(table: str, name: str, values: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = values.type
    if pa.types.is_dictionary(kind):
        values, kind = values.cast(kind.value_type), kind.value_type
    if pa.types.is_floating(kind):
        target = "float64"
    elif pa.types.is_unsigned_integer(kind):
        target = "uint64" if kind == pa.uint64() else "int64"
    elif pa.types.is_integer(kind):
        target = "int64"
    elif pa.types.is_boolean(kind):
        target = "bool"
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        target = "string"
    else:
        raise InvalidArgument(f"table {table}: field {name!r} has unsupported type {kind}")
    cast = FIELD_TYPES[target]
    return values if values.type == cast else values.cast(cast)


def prefilter(
    rows: pa.Table, start: int | None, end: int | None, where: dict[str, str] | None
) -> pa.Table:
    """Rows in ``[start, end)`` whose tags equal ``where``. Only key columns are tested,
    so filtering before the upsert merge gives the same rows as filtering after."""
    mask = None
    if start is not None or end is not None:
        ts = rows.column(TS).cast(pa.int64())
        if start is not None:
            mask = pc.greater_equal(ts, start)
        if end is not None:
            upper = pc.less(ts, end)
            mask = upper if mask is None else pc.and_(mask, upper)
    for tag, value in (where or {}).items():
        if tag not in rows.column_names:
            return rows.slice(0, 0)
        test = pc.equal(rows.column(tag), value)
        mask = test if mask is None else pc.and_(mask, test)
    return rows if mask is None else rows.filter(mask)


ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # with the precision's fraction of a second


def iso_time(value: pa.Scalar) -> str | None:
    """One timestamp as every command prints it (``select``'s format)."""
    if not value.is_valid:
        return None
    as_int = pa.scalar(value.value, pa.int64()) if hasattr(value, "value") else value
    one = pa.array([as_int.as_py()], pa.int64()).cast(value.type)
    return str(pc.strftime(one, format=ISO_FORMAT)[0])


# Seconds of 0001-01-01T00:00:00Z and of 9999-12-31T23:59:59Z: between them a year has
# four digits, so the date and the time of a timestamp's text are apart at character 10.
_FIRST_FOUR_DIGIT_SECOND = -62_135_596_800
_LAST_FOUR_DIGIT_SECOND = 253_402_300_799


def iso_texts(ts: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps (UTC) as every command prints them: :data:`ISO_FORMAT`, the
    precision's fraction of a second. Written by Arrow's cast to text with ``T`` put
    in place of its space, which is eight times faster than ``strftime`` (that looks
    the time zone up per value) and the same text (tests/test_rows.py holds them
    equal); a column holding a year outside 1 to 9999 goes through ``strftime``."""
    unit = ts.type.unit
    naive = ts.cast(pa.timestamp(unit))
    span = pc.min_max(naive.cast(pa.int64())).as_py()
    per = UNITS_PER_SECOND[unit]
    low, high = _FIRST_FOUR_DIGIT_SECOND * per, (_LAST_FOUR_DIGIT_SECOND + 1) * per - 1
    if span["min"] is not None and not (low <= span["min"] and span["max"] <= high):
        return pc.strftime(ts, format=ISO_FORMAT)
    text = pc.utf8_replace_slice(naive.cast(pa.string()), start=10, stop=11, replacement="T")
    return pc.binary_join_element_wise(text, "Z", "")


def to_records(rows: pa.Table, *, iso_time: bool = True) -> list[dict[str, object]]:
    """Rows as dicts; ``ts`` as ISO 8601 text (full precision) or the epoch integer."""
    if TS in rows.column_names:
        ts = rows.column(TS)
        shown = iso_texts(ts) if iso_time else ts.cast(pa.int64())
        rows = rows.set_column(rows.column_names.index(TS), TS, shown)
    records: list[dict[str, object]] = rows.to_pylist()
    return records
