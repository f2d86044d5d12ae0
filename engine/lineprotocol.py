"""InfluxDB line protocol: the exact parser.

Syntax (one point per line; a quoted string field may span lines)::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]

* Lines that are empty, blank, or start with ``#`` (after leading spaces) are
  skipped.
* Measurement: ``\\,`` and ``\\ `` are escapes; ``=`` needs none. Tag keys,
  tag values and field keys: ``\\,``, ``\\=`` and ``\\ ``. A backslash before
  any other character stays a backslash. ``\\\\`` is one backslash.
* Field values: float (``1``, ``-1.5``, ``1e3``, ``1.``), integer ``1i``,
  unsigned ``1u``, string ``"..."`` (``\\"`` and ``\\\\`` are escapes; newlines
  allowed), boolean ``t T true True TRUE f F false False FALSE``.
* Timestamp: an optional integer in the given precision, stored as nanoseconds
  here; a point without one takes the caller's default time.

:func:`parse` yields :class:`Point` or raises :class:`LineError` with the
line and column (1-based) of the first offending byte.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PRECISION_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_INT_RE = re.compile(r"[+-]?\d+\Z")
_UINT_RE = re.compile(r"\d+\Z")
_BOOLS = {
    "t": True,
    "T": True,
    "true": True,
    "True": True,
    "TRUE": True,
    "f": False,
    "F": False,
    "false": False,
    "False": False,
    "FALSE": False,
}
_TIME_RE = re.compile(r"-?\d+\Z")


class LineError(ValueError):
    def __init__(self, reason: str, line: int, column: int, text: str = "") -> None:
        super().__init__(f"line {line}, column {column}: {reason}")
        self.reason = reason
        self.line = line
        self.column = column
        self.text = text


@dataclass
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, Any]  # value types: float, int (tagged by ``kinds``), bool, str
    kinds: dict[str, str]  # field -> float64|int64|uint64|bool|string
    time: int | None  # nanoseconds, None when the line had no timestamp
    line: int


class _Cursor:
    """Position in the input with line/column for errors."""

    def __init__(self, text: str, line: int) -> None:
        self.text = text
        self.pos = 0
        self.line = line
        self.line_start = 0

    def error(self, reason: str, pos: int | None = None) -> LineError:
        at = self.pos if pos is None else pos
        line = self.line + self.text.count("\n", self.line_start, at)
        start = self.text.rfind("\n", 0, at) + 1
        return LineError(reason, line, at - start + 1)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""


def _read_name(cur: _Cursor, stops: str, escapable: str, what: str) -> str:
    """Read up to an unescaped character of ``stops`` (or newline/end)."""
    text, out = cur.text, []
    start = cur.pos
    while cur.pos < len(text):
        ch = text[cur.pos]
        if ch == "\\" and cur.pos + 1 < len(text) and text[cur.pos + 1] in escapable:
            out.append(text[cur.pos + 1])
            cur.pos += 2
            continue
        if ch in stops or ch == "\n":
            break
        if ch == "\\" and cur.pos + 1 < len(text) and text[cur.pos + 1] == "\\":
            out.append("\\")
            cur.pos += 2
            continue
        out.append(ch)
        cur.pos += 1
    if cur.pos == start:
        raise cur.error(f"expected {what}")
    return "".join(out)


def _read_string(cur: _Cursor) -> str:
    text = cur.text
    start = cur.pos
    cur.pos += 1  # opening quote
    out = []
    while cur.pos < len(text):
        ch = text[cur.pos]
        if ch == "\\" and cur.pos + 1 < len(text) and text[cur.pos + 1] in '"\\':
            out.append(text[cur.pos + 1])
            cur.pos += 2
            continue
        if ch == '"':
            cur.pos += 1
            return "".join(out)
        out.append(ch)
        cur.pos += 1
    raise cur.error("unterminated string field value", start)


def _field_value(cur: _Cursor, key: str) -> tuple[Any, str]:
    if cur.peek() == '"':
        return _read_string(cur), "string"
    start = cur.pos
    text = cur.text
    while cur.pos < len(text) and text[cur.pos] not in ", \n":
        cur.pos += 1
    raw = text[start : cur.pos]
    if not raw:
        raise cur.error(f"field {key!r} has no value", start)
    return _scalar(cur, raw, key, start)


def _scalar(cur: _Cursor, raw: str, key: str, start: int) -> tuple[Any, str]:
    last = raw[-1]
    if last == "i" and _INT_RE.match(raw[:-1]):
        value = int(raw[:-1])
        if not INT64_MIN <= value <= INT64_MAX:
            raise cur.error(f"integer field {key!r} value {raw} out of range", start)
        return value, "int64"
    if last == "u" and _UINT_RE.match(raw[:-1]):
        value = int(raw[:-1])
        if value > UINT64_MAX:
            raise cur.error(f"unsigned field {key!r} value {raw} out of range", start)
        return value, "uint64"
    if raw in _BOOLS:
        return _BOOLS[raw], "bool"
    if _FLOAT_RE.match(raw):
        number = float(raw)
        if math.isinf(number):
            raise cur.error(f"float field {key!r} value {raw} out of range", start)
        return number, "float64"
    raise cur.error(f"invalid value {raw!r} for field {key!r}", start)


def _skip_spaces(cur: _Cursor) -> int:
    start = cur.pos
    while cur.peek() == " ":
        cur.pos += 1
    return cur.pos - start


def _parse_point(cur: _Cursor, default_time: int | None, scale: int) -> Point:
    line = cur.line + cur.text.count("\n", cur.line_start, cur.pos)
    measurement = _read_name(cur, ", ", ", \\", "measurement")
    tags: dict[str, str] = {}
    while cur.peek() == ",":
        cur.pos += 1
        key = _read_name(cur, ",= ", ",= ", "tag key")
        if cur.peek() != "=":
            raise cur.error(f"expected '=' after tag key {key!r}")
        cur.pos += 1
        tags[key] = _read_name(cur, ", ", ",= ", f"value for tag {key!r}")
    if not _skip_spaces(cur):
        raise cur.error("expected a space before the fields")
    fields: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    while True:
        key = _read_name(cur, ",= ", ",= ", "field key")
        if cur.peek() != "=":
            raise cur.error(f"expected '=' after field key {key!r}")
        cur.pos += 1
        fields[key], kinds[key] = _field_value(cur, key)
        if cur.peek() != ",":
            break
        cur.pos += 1
    time = default_time
    if _skip_spaces(cur) and cur.peek() not in ("", "\n"):
        start = cur.pos
        while cur.pos < len(cur.text) and cur.text[cur.pos] not in " \n":
            cur.pos += 1
        raw = cur.text[start : cur.pos]
        if not _TIME_RE.match(raw):
            raise cur.error(f"invalid timestamp {raw!r}", start)
        time = int(raw) * scale
        if not INT64_MIN <= time <= INT64_MAX:
            raise cur.error(f"timestamp {raw} out of range", start)
        _skip_spaces(cur)
    if cur.peek() not in ("", "\n"):
        raise cur.error(f"unexpected {cur.peek()!r} after the point")
    return Point(measurement, tags, fields, kinds, time, line)


def parse(
    text: str, *, precision: str = "ns", default_time: int | None = None, first_line: int = 1
) -> Iterator[Point]:
    """Parse every point of ``text``; raises :class:`LineError` at the first bad one."""
    scale = PRECISION_NS[precision]
    cur = _Cursor(text, first_line)
    while cur.pos < len(text):
        _skip_spaces(cur)
        if cur.peek() in ("\n", ""):
            _next_line(cur)
            continue
        if cur.peek() == "#":
            end = text.find("\n", cur.pos)
            cur.pos = len(text) if end < 0 else end
            _next_line(cur)
            continue
        yield _parse_point(cur, default_time, scale)
        _next_line(cur)


def _next_line(cur: _Cursor) -> None:
    cur.line += cur.text.count("\n", cur.line_start, cur.pos)
    if cur.pos < len(cur.text):
        cur.pos += 1  # the newline
        cur.line += 1
    cur.line_start = cur.pos
