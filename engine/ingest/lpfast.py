"""Line protocol, vectorised: blocks of plain lines parsed with Arrow compute kernels.

Most line protocol is plain: no escapes, no quotes inside values, single
spaces between the three sections, and long runs of lines of the same
*shape* (measurement, tag keys and field keys in the same order). Such lines
are parsed here a whole shape at a time, column by column, in Arrow's C++
kernels; every other line goes to the exact parser (:mod:`engine.ingest.lineprotocol`),
which stays the authority.

A line takes the fast path only if it matches :data:`PLAIN_LINE`, a regular
expression that accepts a strict subset of what the exact parser accepts:

* names (measurement, tag keys and values, field keys) hold no space, comma,
  ``=``, quote, backslash or control character, and the measurement does not
  start with ``#``;
* values are ``-?D{1,18}i``, ``D{1,19}u`` (both always in range), a float with
  at most 30 integer digits and a two-digit exponent (always finite), a boolean
  spelling, or a string without quotes, backslashes, commas, spaces or control
  characters (so it cannot span lines);
* the timestamp, if any, is ``-?D{1,19}``; one that overflows after scaling
  sends its lines to the exact parser.

Within a shape, a field column whose values are of mixed kinds, a duplicate
key, or a key used both as tag and field also goes to the exact parser, so
every result is the one the exact parser gives (``tests/test_lineprotocol.py``
runs the corpus through both paths).

A quoted string may span lines. A line that is not plain and whose string is
still open at its end starts a multi-line point: :func:`parse_lines` stops
there and reports where, and the caller parses the rest as text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.arrowmods import pa, pc
from engine.ingest import lpnative
from engine.ingest.lineprotocol import BOOLS, PRECISION_NS, LineError, Point, UnclosedString, parse
from engine.ingest.lpnative import Part as Part  # both parsers give their rows as these
from engine.names import TIME_KEY, column_for_key
from engine.storage.schema import FIELD_TYPES, TS

_NAME = r'[^\x00-\x20,=\\"\x7f]+'
_VALUE = (
    r"(?:-?[0-9]{1,18}i|[0-9]{1,19}u"
    r"|-?(?:[0-9]{1,30}(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,2})?"
    r"|t|T|true|True|TRUE|f|F|false|False|FALSE"
    r'|"[^\x00-\x20,"\\\x7f]*")'
)
PLAIN_LINE = (
    rf'^[^#\x00-\x20,=\\"\x7f][^\x00-\x20,=\\"\x7f]*(?:,{_NAME}={_NAME})*'
    rf" {_NAME}={_VALUE}(?:,{_NAME}={_VALUE})*(?: -?[0-9]{{1,19}})?$"
)
_TRUE = pa.array(["t", "T", "true", "True", "TRUE"])
_FALSE = pa.array(["f", "F", "false", "False", "FALSE"])
# The absolute line number of each row, so parts can be put back in order; a line feed
# in its name keeps it apart from every key line protocol can carry.
LINE = "\nline"


@dataclass
class Parsed:
    parts: list[Part] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)  # lines the exact parser took
    errors: list[LineError] = field(default_factory=list)
    open_string_at: int | None = None  # index of the line that starts a multi-line point


def split_lines(block: bytes) -> pa.StringArray:
    """The lines of ``block`` (split at LF, the final empty one dropped), as Arrow strings.

    Raises ``UnicodeDecodeError`` when the block is not valid UTF-8."""
    offsets = pa.array([0, len(block)], pa.int32()).buffers()[1]
    whole = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(block)])
    try:
        whole.validate(full=True)
    except pa.ArrowInvalid:
        block.decode()  # raises UnicodeDecodeError with the position
        raise
    if lpnative.active() == "native":
        return lpnative.split(block)
    lines = pc.split_pattern(whole, "\n").flatten()
    if block.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    return lines


def plain_mask(lines: pa.StringArray) -> list[bool] | None:
    """Which lines take the vectorised path; None where the native parser takes them all
    (it finds its own)."""
    if lpnative.active() == "native":
        return None
    return pc.match_substring_regex(lines, PLAIN_LINE).to_pylist()  # type: ignore[no-any-return]


def parse_lines(
    lines: pa.StringArray,
    plain: list[bool] | None,
    first_line: int,
    *,
    precision: str,
    divisor: int,
    default_time: int,
    ends_input: bool,
) -> Parsed:
    """Parse ``lines`` (numbered from ``first_line``): plain ones by shape, others one by one.

    Times are in ``precision`` units in the input and stored as nanoseconds // ``divisor``.
    ``ends_input``: the last line is the end of the input, with no newline after it.
    ``plain`` None: the native parser takes every line it can."""
    if plain is None:
        return _parse_native(lines, first_line, precision, divisor, default_time, ends_input)
    parsed = Parsed()
    others = (index for index, is_plain in enumerate(plain) if not is_plain)
    _parse_until_open_string(lines, others, first_line, precision, default_time, ends_input, parsed)
    stop = len(plain) if parsed.open_string_at is None else parsed.open_string_at
    candidates = [i for i in range(stop) if plain[i]]
    if candidates:
        shapes = _Shapes(lines, first_line, PRECISION_NS[precision], divisor, default_time)
        for index in shapes.parse(candidates, parsed):
            _parse_one(lines, index, first_line, precision, default_time, parsed, newline=False)
    parsed.points.sort(key=lambda point: point.line)
    parsed.errors.sort(key=lambda error: error.line)
    return parsed


def _parse_native(
    lines: pa.StringArray,
    first_line: int,
    precision: str,
    divisor: int,
    default_time: int,
    ends_input: bool,
) -> Parsed:
    scale = PRECISION_NS[precision]
    parts, deferred = lpnative.parse(
        lines,
        first_line,
        scale=scale,
        divisor=divisor,
        default_ts=stored_default_time(default_time, scale, divisor),
        line=LINE,
    )
    parsed = Parsed()
    _parse_until_open_string(
        lines, deferred, first_line, precision, default_time, ends_input, parsed
    )
    if parsed.open_string_at is not None:  # the lines from there are parsed as text
        before = first_line + parsed.open_string_at
        parts = [_rows_before(part, before) for part in parts]
    parsed.parts = [part for part in parts if part.rows.num_rows]
    return parsed


def stored_default_time(default_time: int, scale: int, divisor: int) -> int:
    """The stored time of a point without one: ``default_time`` (ns) truncated to the
    input's precision (``scale`` ns), in units of ``divisor`` ns."""
    return (default_time - default_time % scale) // divisor


def _parse_until_open_string(
    lines: pa.StringArray,
    indices: Iterable[int],
    first_line: int,
    precision: str,
    default_time: int,
    ends_input: bool,
    parsed: Parsed,
) -> None:
    """Lines ``indices`` (in order) through the exact parser, up to one whose string is
    still open at its end: :attr:`Parsed.open_string_at` says which."""
    for index in indices:
        last = ends_input and index == len(lines) - 1
        try:
            _parse_one(lines, index, first_line, precision, default_time, parsed, newline=not last)
        except UnclosedString:
            parsed.open_string_at = index
            return


def _rows_before(part: Part, line: int) -> Part:
    rows = part.rows.filter(pc.less(part.rows[LINE], line))
    return Part(part.table, rows, part.tags, part.kinds)


def _parse_one(
    lines: pa.StringArray,
    index: int,
    first_line: int,
    precision: str,
    default_time: int,
    parsed: Parsed,
    *,
    newline: bool,
) -> None:
    """One line through the exact parser; its point or its error is added to ``parsed``."""
    text = lines[index].as_py() + ("\n" if newline else "")
    try:
        parsed.points.extend(
            parse(
                text, precision=precision, default_time=default_time, first_line=first_line + index
            )
        )
    except UnclosedString:
        raise
    except LineError as err:
        parsed.errors.append(err)


class _Shapes:
    """Plain lines grouped by shape and turned into columns."""

    MAX_SHAPES = 64  # per call; lines of rarer shapes go to the exact parser

    def __init__(
        self, lines: pa.StringArray, first_line: int, scale: int, divisor: int, default_time: int
    ) -> None:
        self.lines = lines
        self.first_line = first_line
        self.scale = scale
        self.divisor = divisor
        self.default_time = stored_default_time(default_time, scale, divisor)

    def parse(self, candidates: list[int], parsed: Parsed) -> list[int]:
        """Append a :class:`Part` per shape to ``parsed``; return the lines left to the
        exact parser."""
        indices = pa.array(candidates, pa.int64())
        chosen_lines = self.lines if len(indices) == len(self.lines) else self.lines.take(indices)
        sections = pc.split_pattern(chosen_lines, " ")
        count = pc.list_value_length(sections)
        fallback: list[int] = []
        for with_time in (True, False):
            chosen = pc.equal(count, 3 if with_time else 2)
            if not pc.any(chosen).as_py():
                continue
            group = sections.filter(chosen)
            fallback += self._parse_group(
                indices.filter(chosen),
                pc.list_element(group, 0),
                pc.list_element(group, 1),
                pc.list_element(group, 2) if with_time else None,
                parsed,
            )
        return sorted(fallback)

    def _parse_group(
        self,
        indices: pa.Int64Array,
        series: pa.StringArray,
        fields: pa.StringArray,
        times: pa.StringArray | None,
        parsed: Parsed,
    ) -> list[int]:
        series_parts = pc.split_pattern(series, ",")
        field_parts = pc.split_pattern(fields, ",")
        series_count = pc.list_value_length(series_parts)
        field_count = pc.list_value_length(field_parts)
        todo = pa.array([True] * len(indices))
        fallback: list[int] = []
        shapes = 0
        while True:
            left = pc.indices_nonzero(todo)
            if not len(left):
                return fallback
            if shapes == self.MAX_SHAPES:
                rest: list[int] = indices.take(left).to_pylist()
                return fallback + rest
            shapes += 1
            pivot = left[0].as_py()
            same_counts = pc.and_(
                pc.equal(series_count, series_count[pivot]),
                pc.equal(field_count, field_count[pivot]),
            )
            candidates = pc.and_(todo, same_counts)
            positions = pc.indices_nonzero(candidates)
            shape = _Shape.of(series[pivot].as_py(), fields[pivot].as_py())
            tag_columns = _columns(series_parts, positions, series_count[pivot].as_py())
            field_columns = _columns(field_parts, positions, field_count[pivot].as_py())
            match = shape.matches(tag_columns, field_columns)
            everyone = pc.all(match).as_py()
            members = positions if everyone else positions.filter(match)
            todo = pc.and_(todo, pc.invert(pc.replace_with_mask(candidates, candidates, match)))
            lines = indices.take(members)
            part = None
            if shape.usable:
                if not everyone:
                    tag_columns = [column.filter(match) for column in tag_columns]
                    field_columns = [column.filter(match) for column in field_columns]
                part = self._part(
                    shape,
                    tag_columns[1:],
                    field_columns,
                    None if times is None else times.take(members),
                    lines,
                )
            if part is None:
                fallback += lines.to_pylist()
            else:
                parsed.parts.append(part)

    def _part(
        self,
        shape: _Shape,
        tag_columns: list[pa.StringArray],
        field_columns: list[pa.StringArray],
        times: pa.StringArray | None,
        lines: pa.Int64Array,
    ) -> Part | None:
        """The shape's rows as columns, or None when its lines need the exact parser."""
        stamps = self._times(times, len(lines))
        if stamps is None:
            return None
        columns: dict[str, Any] = {TS: stamps}
        for key, pieces in zip(shape.tags, tag_columns, strict=True):
            columns[column_for_key(key)] = _values(pieces, key)
        kinds: dict[str, str] = {}
        for key, pieces in zip(shape.fields, field_columns, strict=True):
            typed = _typed(_values(pieces, key))
            if typed is None:
                return None
            kinds[key], columns[column_for_key(key)] = typed
        columns[LINE] = pc.add(lines, self.first_line)
        return Part(shape.measurement, pa.table(columns), list(shape.tags), kinds)

    def _times(self, times: pa.StringArray | None, rows: int) -> pa.Array | None:
        if times is None:
            return pa.array([self.default_time] * rows, pa.int64())
        try:
            nanos = pc.multiply_checked(times.cast(pa.int64()), self.scale)
        except (pa.ArrowInvalid, OverflowError):
            return None  # out of range: the exact parser says where
        if self.divisor == 1:
            return nanos
        if pc.min(nanos).as_py() < 0:
            return None  # Arrow's division truncates; the stored time is floored
        return pc.divide(nanos, self.divisor)


@dataclass
class _Shape:
    measurement: str
    tags: list[str]
    fields: list[str]

    @classmethod
    def of(cls, series: str, fields: str) -> _Shape:
        measurement, *tags = series.split(",")
        return cls(
            measurement,
            [tag.partition("=")[0] for tag in tags],
            [item.partition("=")[0] for item in fields.split(",")],
        )

    @property
    def usable(self) -> bool:
        """Keys the fast path can take as they are (the exact parser refuses duplicate tags,
        keeps the last of duplicate fields, and a key ``time`` refuses its line)."""
        keys = [*self.tags, *self.fields]
        return len(set(keys)) == len(keys) and TIME_KEY not in keys

    def matches(self, tags: list[pa.StringArray], fields: list[pa.StringArray]) -> pa.Array:
        """Which rows have this shape (``tags[0]`` holds the measurements)."""
        match = pc.equal(tags[0], self.measurement)
        for key, pieces in zip([*self.tags, *self.fields], [*tags[1:], *fields], strict=True):
            match = pc.and_(match, pc.starts_with(pieces, key + "="))
        return match


def _columns(parts: pa.ListArray, positions: pa.Array, width: int) -> list[pa.StringArray]:
    """The chosen rows' lists, all ``width`` long, as one array per position."""
    chosen = parts if len(positions) == len(parts) else parts.take(positions)
    grid = pa.FixedSizeListArray.from_arrays(chosen.flatten(), width)
    return [pc.list_element(grid, position) for position in range(width)]


def _values(pieces: pa.StringArray, key: str) -> pa.StringArray:
    """``key=value`` pieces -> values (lengths in code points, as the kernel counts them)."""
    return pc.utf8_slice_codeunits(pieces, len(key) + 1)


def _typed(raw: pa.StringArray) -> tuple[str, pa.Array] | None:
    """A field column's kind and values, or None when its values are of mixed kinds."""
    first = raw[0].as_py()
    if first.startswith('"'):
        if not pc.all(pc.starts_with(raw, '"')).as_py():
            return None
        return "string", pc.utf8_slice_codeunits(raw, 1, -1)
    suffix = first[-1]
    if suffix in "iu":
        if not pc.all(pc.ends_with(raw, suffix)).as_py():
            return None
        kind = "int64" if suffix == "i" else "uint64"
        return kind, pc.utf8_slice_codeunits(raw, 0, -1).cast(FIELD_TYPES[kind])
    if first in BOOLS:
        true = pc.is_in(raw, _TRUE)
        if not pc.all(pc.or_(true, pc.is_in(raw, _FALSE))).as_py():
            return None
        return "bool", true
    try:
        return "float64", raw.cast(pa.float64())
    except pa.ArrowInvalid:
        return None
