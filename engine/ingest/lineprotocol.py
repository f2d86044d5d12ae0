"""InfluxDB line protocol: the exact parser.

Syntax (one point per line; a quoted string field may span lines)::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] [timestamp]

* Lines that are empty, blank, or start with ``#`` (after leading spaces) are
  skipped.
* Measurement: ``\\,`` and ``\\ `` are escapes; ``=`` needs none. Tag keys,
  tag values and field keys: ``\\,``, ``\\=`` and ``\\ ``. A backslash before
  any other character stays a backslash, so outside strings ``\\\\`` is two
  backslashes. Control characters (0-31, 127) end a name (and are then an
  error) but may stand in a tag value. Tag keys must not repeat.
* Field values: float (``1``, ``-1.5``, ``1e3``, ``1.``), integer ``1i``,
  unsigned ``1u``, string ``"..."`` (``\\"`` and ``\\\\`` are escapes; newlines
  allowed), boolean ``t T true True TRUE f F false False FALSE``. A value ends
  at ``,`` or white space (space, CR, LF).
* Timestamp: an optional integer in the given precision, stored as nanoseconds
  here; a point without one takes the caller's default time, truncated to
  the precision.
* Lines end with LF, CR LF, or a CR that ends the input. Comments hold
  printable characters only.

The rules follow InfluxData's ``line-protocol`` v2 decoder, and
``tests/test_lineprotocol.py`` holds this parser to its conformance corpus.

:func:`parse` yields :class:`Point` or raises :class:`LineError` with the
line and column (1-based) of the first offending byte.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PRECISION_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}

INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
# re.ASCII: \d would otherwise match other scripts' digits, which float() and int() accept
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)
_INT_RE = re.compile(r"[+-]?\d+\Z", re.ASCII)
_UINT_RE = re.compile(r"\d+\Z", re.ASCII)
BOOLS = {
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
_TIME_RE = re.compile(r"-?\d+\Z", re.ASCII)


class LineError(ValueError):
    def __init__(self, reason: str, line: int, column: int, text: str = "") -> None:
        super().__init__(f"line {line}, column {column}: {reason}")
        self.reason = reason
        self.line = line
        self.column = column
        self.text = text


class UnclosedString(LineError):
    """A string field still open at the end of the input: with more input it may close.
    ``start`` is the offset of its point's first character."""

    start = 0


@dataclass
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, Any]  # value types: float, int (tagged by ``kinds``), bool, str
    kinds: dict[str, str]  # field -> float64|int64|uint64|bool|string
    time: int | None  # nanoseconds, None when the line had no timestamp
    line: int


def _printable(ch: str) -> bool:
    code = ord(ch)
    return code >= 32 and code != 127


_WHITESPACE = " \r\n"
_VALUE_RUN = re.compile(r"[^, \r\n]*")


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


def _plain_run(stops: str, controls: bool) -> re.Pattern[str]:
    """A regex for the longest run of token characters with no backslash: the same classes
    as the loop in :func:`_read_token`, matched in C (the common case has no escapes)."""
    banned = re.escape(stops) + " \\r\\n\\\\" + ("" if controls else "\\x00-\\x1f\\x7f")
    return re.compile(f"[^{banned}]*")


_MEASUREMENT_RUN = _plain_run(",", controls=False)
_KEY_RUN = _plain_run(",=", controls=False)
_TAG_VALUE_RUN = _plain_run(",=", controls=True)


def _read_token(
    cur: _Cursor, stops: str, escapable: str, run: re.Pattern[str], *, controls: bool = False
) -> str:
    """Read up to a character of ``stops``, whitespace or a control character.

    A backslash before a character of ``escapable`` stands for that character;
    before anything else it is an ordinary character (so ``\\`` is not an
    escape here: the first backslash is kept and the second starts afresh).
    Control characters end a token unless ``controls`` (tag values may hold them).
    """
    text = cur.text
    match = run.match(text, cur.pos)
    end = match.end() if match else cur.pos
    if end == len(text) or text[end] != "\\":
        token = text[cur.pos : end]
        cur.pos = end
        return token
    out: list[str] = []
    while cur.pos < len(text):
        ch = text[cur.pos]
        if ch == "\\" and cur.pos + 1 < len(text) and text[cur.pos + 1] in escapable:
            out.append(text[cur.pos + 1])
            cur.pos += 2
            continue
        if ch in stops or ch in _WHITESPACE or not (controls or _printable(ch)):
            break
        out.append(ch)
        cur.pos += 1
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
    err = cur.error("expected closing quote for string field value, found end of input", start)
    raise UnclosedString(err.reason, err.line, err.column)


def _field_value(cur: _Cursor, key: str) -> tuple[Any, str]:
    first = cur.peek()
    if first == '"':
        return _read_string(cur), "string"
    start = cur.pos
    match = _VALUE_RUN.match(cur.text, start)
    cur.pos = match.end() if match else start
    raw = cur.text[start : cur.pos]
    if not raw:
        raise cur.error(f"expected a value for field {key!r}", start)
    if first not in "tTfF-0123456789.":
        raise cur.error(f"field value {raw!r} of field {key!r} has unrecognized type", start)
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
    if raw in BOOLS:
        return BOOLS[raw], "bool"
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


def _at_line_end(cur: _Cursor) -> bool:
    """At the end of input, ``\\n``, ``\\r\\n``, or a ``\\r`` that ends the input."""
    rest = cur.text[cur.pos : cur.pos + 2]
    return rest in ("", "\n", "\r") or rest[0] == "\n" or rest == "\r\n"


def _parse_point(cur: _Cursor, default_time: int | None, scale: int) -> Point:
    line = cur.line + cur.text.count("\n", cur.line_start, cur.pos)
    begin = cur.pos
    measurement = _read_token(cur, ",", " ,", _MEASUREMENT_RUN)
    if not measurement:
        what = repr(cur.peek()) if cur.peek() else "nothing"
        raise cur.error(f"invalid character {what} found at start of measurement name", begin)
    tags = _parse_tags(cur)
    if cur.peek() != " ":
        raise cur.error(
            f"expected tag key or field but found {cur.peek()!r} instead"
            if cur.peek()
            else "expected fields, found end of input"
        )
    _skip_spaces(cur)
    try:
        fields, kinds = _parse_fields(cur)
    except UnclosedString as exc:
        exc.start = begin
        raise
    time = None if default_time is None else default_time - default_time % scale
    if cur.peek() == " ":
        _skip_spaces(cur)
        if not _at_line_end(cur):
            time = _parse_time(cur, scale)
    if not _at_line_end(cur):
        raise cur.error(f"unexpected character {cur.peek()!r} after the point")
    return Point(measurement, tags, fields, kinds, time, line)


def _parse_tags(cur: _Cursor) -> dict[str, str]:
    tags: dict[str, str] = {}
    while cur.peek() == ",":
        cur.pos += 1
        if cur.peek() in ("", *_WHITESPACE):
            raise cur.error("expected tag key after comma")
        start = cur.pos
        key = _read_token(cur, ",=", ",= ", _KEY_RUN)
        if not key:
            raise cur.error(f"expected tag key or field but found {cur.peek()!r} instead", start)
        if cur.peek() != "=":
            raise cur.error(f"expected '=' after tag key {key!r}, but got {cur.peek()!r} instead")
        cur.pos += 1
        value = _read_token(cur, ",=", ", =", _TAG_VALUE_RUN, controls=True)
        if not value:
            raise cur.error(f"expected tag value after tag key {key!r}, but none found")
        if key in tags:
            raise cur.error(f"duplicate tag key {key!r}", start)
        tags[key] = value
    return tags


def _parse_fields(cur: _Cursor) -> tuple[dict[str, Any], dict[str, str]]:
    fields: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    while True:
        start = cur.pos
        key = _read_token(cur, ",=", ",= ", _KEY_RUN)
        if not key:
            what = repr(cur.peek()) if cur.peek() else "end of input"
            raise cur.error(f"expected a field key, found {what}", start)
        if cur.peek() != "=":
            raise cur.error(f"want '=' after field key {key!r}")
        cur.pos += 1
        fields[key], kinds[key] = _field_value(cur, key)
        if cur.peek() != ",":
            return fields, kinds
        cur.pos += 1


def _parse_time(cur: _Cursor, scale: int) -> int:
    start = cur.pos
    while cur.pos < len(cur.text) and cur.text[cur.pos] in "-0123456789":
        cur.pos += 1
    raw = cur.text[start : cur.pos]
    if not _TIME_RE.match(raw) or not (cur.peek() == "" or cur.peek() in _WHITESPACE):
        raise cur.error(f"invalid timestamp {cur.text[start : cur.pos + 1]!r}", start)
    value = int(raw) * scale
    if not INT64_MIN <= value <= INT64_MAX:
        raise cur.error(f"timestamp {raw} out of range", start)
    _skip_spaces(cur)
    return value


def parse(
    text: str, *, precision: str = "ns", default_time: int | None = None, first_line: int = 1
) -> Iterator[Point]:
    """Parse every point of ``text``; raises :class:`LineError` at the first bad one."""
    scale = PRECISION_NS[precision]
    cur = _Cursor(text, first_line)
    while cur.pos < len(text):
        _skip_spaces(cur)
        if _at_line_end(cur):
            _next_line(cur)
            continue
        if cur.peek() == "#":
            _skip_comment(cur)
            continue
        yield _parse_point(cur, default_time, scale)
        _next_line(cur)


def _skip_comment(cur: _Cursor) -> None:
    start = cur.pos
    while cur.pos < len(cur.text) and cur.text[cur.pos] not in "\r\n":
        if not _printable(cur.text[cur.pos]):
            raise cur.error("invalid character found in comment line", start)
        cur.pos += 1
    if not _at_line_end(cur):
        raise cur.error("invalid character found in comment line", start)
    _next_line(cur)


def _next_line(cur: _Cursor) -> None:
    """Step over the line end at the cursor (``\\n``, ``\\r\\n`` or a final ``\\r``)."""
    cur.line += cur.text.count("\n", cur.line_start, cur.pos)
    if cur.text.startswith("\r\n", cur.pos):
        cur.pos += 2
        cur.line += 1
    elif cur.pos < len(cur.text):
        cur.pos += 1
        cur.line += cur.text[cur.pos - 1] == "\n"
    cur.line_start = cur.pos
