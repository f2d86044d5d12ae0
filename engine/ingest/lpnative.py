"""Line protocol in one native pass: :mod:`engine.ingest._lpnative`, when it was built.

The C extension (``_lpnative.c``, built by the package's own build where a compiler
is found; ``setup.py`` marks it optional) reads an Arrow string array of lines
without the GIL, one pass over the bytes, and returns per *shape* (measurement, tag
keys and field keys in line order, field kinds) the buffers of its columns: ``ts``
(stored units), each tag as a string column, each field in its type, and the line
numbers. Lines it is not sure to parse exactly as :mod:`engine.ingest.lineprotocol`
does (any error, control characters or CR, a leading space or ``#``, a string that
does not close on its line, duplicate keys, a key used as tag and field, the key
``time``, more than 64 tags or fields, numbers out of range) come back as *deferred*:
the exact parser takes them, so it stays the authority for every refusal and its
message. The buffers are the extension's own memory, handed to Arrow without a copy.
It also splits blocks into lines (``split``), one ``memchr`` pass.
``tests/test_lpnative.py`` holds the two parsers to the same rows on the corpus and on
random bytes.

``TSADMIN_LP_PARSER=python`` chooses the pure-Python path even where the extension
was built (to compare, or to rule the extension out); ``tsadmin --version`` names the
parser in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.arrowmods import pa
from engine.ingest.parserchoice import native_module
from engine.names import column_for_key
from engine.storage.schema import FIELD_TYPES, TS

_NATIVE = native_module()


def active() -> str:
    """The line-protocol parser in use: ``native`` or ``python`` (tests may set
    ``_NATIVE`` to None to run the pure-Python one)."""
    return "python" if _NATIVE is None else "native"


@dataclass
class Part:
    """Rows of one table and one shape, as either parser gives them: ``ts``, tags,
    fields (in their columns, see :func:`engine.names.column_for_key`), and the line
    numbers (the column :data:`engine.ingest.lpfast.LINE`); ``tags`` and ``kinds`` are
    by key."""

    table: str
    rows: pa.Table
    tags: list[str]
    kinds: dict[str, str]


def split(block: bytes) -> pa.StringArray:
    """The lines of ``block`` (split at LF, the final empty one dropped) as Arrow strings,
    as :func:`engine.ingest.lpfast.split_lines` makes them; ``block`` is valid UTF-8."""
    assert _NATIVE is not None, "the native parser is not built"
    count, offsets, data = _NATIVE.split(block)
    return _strings(count, offsets, data)


def parse(
    lines: pa.StringArray, first_line: int, *, scale: int, divisor: int, default_ts: int, line: str
) -> tuple[list[Part], list[int]]:
    """``lines`` (numbered from ``first_line``) by shape, and the indices of the lines
    the exact parser must take. Times are in units of ``scale`` nanoseconds in the input,
    stored floored to ``divisor`` nanoseconds; ``default_ts`` is the stored time of a
    point without one."""
    assert _NATIVE is not None, "the native parser is not built"
    if lines.null_count:
        lines = lines.fill_null("")
    _, offsets, data = lines.buffers()
    shapes, deferred = _NATIVE.parse(
        offsets,
        data if data is not None else b"",
        lines.offset,
        len(lines),
        first_line,
        scale,
        divisor,
        default_ts,
    )
    return [_part(shape, line) for shape in shapes], deferred


def _part(shape: tuple[Any, ...], line: str) -> Part:
    measurement, tags, fields, kinds, rows, ts, numbers, tag_columns, field_columns = shape
    columns: dict[str, pa.Array] = {TS: _fixed(pa.int64(), rows, ts)}
    for key, (offsets, data) in zip(tags, tag_columns, strict=True):
        columns[column_for_key(key)] = _strings(rows, offsets, data)
    for key, kind, buffers in zip(fields, kinds, field_columns, strict=True):
        if kind == "string":
            columns[column_for_key(key)] = _strings(rows, *buffers)
        else:
            columns[column_for_key(key)] = _fixed(FIELD_TYPES[kind], rows, buffers[0])
    columns[line] = _fixed(pa.int64(), rows, numbers)
    return Part(measurement, pa.table(columns), list(tags), dict(zip(fields, kinds, strict=True)))


def _fixed(kind: pa.DataType, rows: int, values: Any) -> pa.Array:
    return pa.Array.from_buffers(kind, rows, [None, pa.py_buffer(values)])


def _strings(rows: int, offsets: Any, data: Any) -> pa.Array:
    return pa.Array.from_buffers(
        pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
