"""CSV ingest: a header row, then rows; every problem of a row is that row's own.

The header names the columns once each (an empty name, such as the index column
pandas writes, and a name given twice are refused before anything is read). The
timestamp column is ``--ts-column``, else the first of ``ts``, ``time``,
``_time``, ``timestamp``; tag columns are given; the table is given or comes from
a column; every other column is a field, typed by the schema given, else by the
table's stored schema, else from its first values (int64, float64, bool,
string).

Columns are read as text by pyarrow's streaming reader and converted here, so a
value that does not convert fails its row, not the file: a row with the wrong
number of columns, a value that is not of its column's type, a missing or
unreadable timestamp, a timestamp finer than the database's precision, a
missing table name. With ``skip`` such a row goes to the
rejects file with its row number and reason and the rest is loaded; with
``abort`` the first one stops the ingest, naming the file and row. A row number
counts the header as row 1; it is the line number unless a quoted value spans
lines.

InfluxDB 2's annotated CSV (``#datatype`` / ``#group`` / ``#default`` rows) is
recognised from its first line and read by :mod:`engine.ingest.annotatedcsv`.
"""

from __future__ import annotations

import bisect
import csv as stdcsv
import io
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, cast

from engine.arrowmods import pa, pacsv, pc
from engine.db.database import Batch, Database
from engine.errors import BadInput, InvalidArgument
from engine.ingest import annotatedcsv
from engine.ingest.csvoptions import CsvOptions, TimeReader, convert_each
from engine.ingest.inputs import BLOCK_BYTES, CountingReader
from engine.ingest.pipeline import (
    FieldKinds,
    IngestOptions,
    IngestReport,
    Progress,
    Run,
    clip,
    running,
)
from engine.names import TIME_KEY, column_for_key, is_valid
from engine.storage.schema import FIELD_TYPES, TS

TS_CANDIDATES = ("ts", "time", "_time", "timestamp")
_TRUE = pa.array(["true", "t"])
_FALSE = pa.array(["false", "f"])


def parse_schema(text: str) -> dict[str, str]:
    """``a:float64,b:int64`` -> {"a": "float64", "b": "int64"}."""
    schema: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, kind = item.partition(":")
        if not sep or kind not in FIELD_TYPES:
            raise InvalidArgument(
                f"invalid schema entry {item!r}",
                hint=f"use column:type with type one of {', '.join(FIELD_TYPES)}",
            )
        schema[name] = kind
    return schema


def ingest_csv(
    db: Database,
    stream: BinaryIO,
    source: str,
    csv: CsvOptions,
    options: IngestOptions,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest CSV (or InfluxDB 2 annotated CSV) from ``stream``; see the module docstring."""
    with running(db, source, options) as run:
        head = _peek(stream)
        counted = CountingReader(cast(BinaryIO, _Chained(head, stream)), run.report)
        if annotatedcsv.is_annotated(head):
            annotatedcsv.ingest(run, counted, csv, progress)
        else:
            _Csv(run, head, csv).run(counted, progress)
    return run.report


class _Csv:
    """One plain CSV input: its header checked, then block after block converted, checked
    row by row and committed."""

    def __init__(self, ingest: Run, head: bytes, csv: CsvOptions) -> None:
        db = ingest.db
        self.ingest = ingest
        self.source = source = ingest.source
        self.csv = csv
        self.options = ingest.options
        self.committer = ingest.committer
        self.kinds = FieldKinds(db, source)
        if not csv.delimiter:
            csv = self.csv = replace(csv, delimiter=sniff_delimiter(head))
        self.header = header_names(head, csv.delimiter, source)
        self.ts_column = check_header(self.header, csv, source)
        self.fields = [
            name
            for name in self.header
            if name not in (self.ts_column, csv.table_column) and name not in csv.tags
        ]
        self.types: dict[str, str] = dict(csv.schema)
        if csv.table and not csv.table_column:
            stored = self.kinds[csv.table]
            for name in self.fields:
                self.types.setdefault(name, stored.get(column_for_key(name), ""))
            self.types = {name: kind for name, kind in self.types.items() if kind}
        self.times = TimeReader(csv, db.settings.precision)
        self.numbers = RowNumbers()

    def run(self, stream: CountingReader, progress: Progress | None) -> None:
        self.guard = Utf8Guard(cast(BinaryIO, stream))
        try:
            reader = pacsv.open_csv(
                self.guard,
                read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
                # quoted values may hold newlines (RFC 4180)
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True,
                    delimiter=self.csv.delimiter,
                    invalid_row_handler=self.numbers.skip,
                ),
                # bytes, so that a row that is not UTF-8 fails alone (see _block)
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.binary() for name in self.header},
                    strings_can_be_null=True,
                ),
            )
            for block in blocks_ahead(reader, self.numbers):
                self._block(block)
                if progress:
                    progress(self.ingest.report.bytes, self.ingest.report.rows)
        except pa.ArrowInvalid as exc:  # the text itself: an unclosed quote, bad UTF-8
            raise BadInput(
                f"{self.source}: after row {self.numbers.next - 1}: {exc}",
                hint="fix the file from that row on",
                source=self.source,
                line=self.numbers.next - 1,
            ) from None
        self._refuse_skipped(None)
        self.committer.commit()

    def _block(self, block: Block) -> None:
        raw, numbers, left_out = block.rows, block.numbers, block.left_out
        bad: dict[int, str] = {}
        rows = _as_text(raw, bad, self.guard.replaced)
        ts = self.times.read(rows.column(self.ts_column), bad)
        expired = {i for i in self.ingest.expired(ts) if i not in bad}
        for index in expired:
            bad[index] = self.ingest.too_old_reason()
        tables = self._table_names(rows, bad)
        columns: dict[str, Any] = {TS: ts}
        for tag in self.csv.tags:
            columns[column_for_key(tag)] = rows.column(tag)
        for name in self.fields:
            kind = self.types.get(name) or self._infer(name, rows.column(name))
            if kind:
                columns[column_for_key(name)] = _convert(name, rows.column(name), kind, bad)
        columns[_INDEX] = pa.array(range(rows.num_rows), pa.int64())
        out = pa.table(columns)
        failed = [
            (numbers.of(i), why, _row_text(raw, i, self.csv.delimiter), i in expired)
            for i, why in bad.items()
        ]
        for number, why, text, dropped in sorted([(*r, False) for r in left_out] + failed):
            self._reject(number, why, text, dropped=dropped)
        if bad:
            keep = pa.array([i not in bad for i in range(out.num_rows)])
            out, tables = out.filter(keep), tables.filter(keep)
        start = 0
        while start < out.num_rows:  # a transaction each batch_rows rows, across blocks
            room = max(1, self.options.batch_rows - self.committer.pending_rows)
            self._add(out.slice(start, room), tables[start : start + room], numbers)
            start += room
            if self.committer.due():
                self.committer.commit()

    def _add(self, rows: pa.Table, tables: pa.ChunkedArray, numbers: Numbering) -> None:
        tag_columns = [column_for_key(t) for t in self.csv.tags]
        parts = [(self.csv.table, rows)]
        if self.csv.table_column:
            parts = [(n, rows.filter(pc.equal(tables, n))) for n in pc.unique(tables).to_pylist()]
        for table, part in parts:
            tags = [t for t, c in zip(self.csv.tags, tag_columns, strict=True) if _has(part, c)]
            kinds = {
                name: self.types[name]
                for name in self.fields
                if name in self.types and _has(part, column_for_key(name))
            }
            problem = self.kinds.problem(table, tags, kinds)
            if problem is not None:
                for index in part.column(_INDEX).to_pylist():
                    self._reject(numbers.of(index), problem, "")
                continue
            rows_only = part.drop_columns([_INDEX])
            self.committer.add(Batch(table, rows_only, [column_for_key(t) for t in tags]))

    def _table_names(self, rows: pa.Table, bad: dict[int, str]) -> pa.ChunkedArray:
        if not self.csv.table_column:
            return pa.chunked_array([pa.nulls(rows.num_rows, pa.string())])
        names = rows.column(self.csv.table_column)
        valid = pc.and_(pc.is_valid(names), pc.greater(pc.utf8_length(names), 0))
        for index in pc.indices_nonzero(pc.invert(valid.fill_null(False))).to_pylist():
            bad.setdefault(index, f"no table name in column {self.csv.table_column!r}")
        for name in pc.unique(names.filter(valid)).to_pylist():
            if not is_valid("table", name):
                at = pc.indices_nonzero(pc.equal(names, name).fill_null(False))
                for index in at.to_pylist():
                    bad.setdefault(index, f"invalid table name {clip(name)!r}")
        return names

    def _infer(self, name: str, values: pa.ChunkedArray) -> str:
        """The type of a new field column, from its first values ("" while it has none)."""
        present = values.drop_null()
        if not len(present):
            return ""
        kind = "string"
        for candidate in ("int64", "float64"):
            try:
                present.cast(FIELD_TYPES[candidate])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            kind = candidate
            break
        else:
            lowered = pc.utf8_lower(present)
            if pc.all(pc.or_(pc.is_in(lowered, _TRUE), pc.is_in(lowered, _FALSE))).as_py():
                kind = "bool"
        self.types[name] = kind
        return kind

    def _refuse_skipped(self, up_to: int | None) -> None:
        """Reject (or stop at) the rows of the wrong width pyarrow left out, up to ``up_to``."""
        for number, reason, text in self.numbers.passed(up_to):
            self._reject(number, reason, text)

    def _reject(self, number: int, reason: str, text: str, *, dropped: bool = False) -> None:
        self.ingest.refuse(number, reason, text, dropped=dropped)


_INDEX = "\nrow"  # a row's index in its block, kept while a block is split by table


def _as_text(raw: pa.Table, bad: dict[int, str], stand_ins: bool) -> pa.Table:
    """The block's columns (read as bytes) as text; a row that was not UTF-8 (it holds
    stand-ins, see :class:`Utf8Guard`) fails."""
    columns = []
    for column in raw.columns:
        values = column.combine_chunks().view(pa.string())  # the guard made it UTF-8
        if stand_ins:
            marked = pc.match_substring_regex(values, Utf8Guard.STAND_IN_PATTERN)
            for index in pc.indices_nonzero(marked.fill_null(False)).to_pylist():
                bad.setdefault(index, "the row is not valid UTF-8")
        columns.append(values)
    return pa.Table.from_arrays(columns, names=raw.column_names)


class Utf8Guard(io.RawIOBase):
    """The input with each byte that is not part of valid UTF-8 replaced by a stand-in,
    U+10FF80 + (byte - 0x80): a private-use character, valid UTF-8, so pyarrow's reader
    (which cannot report a row of the wrong width that is not UTF-8) parses on, and the
    row holding it is refused and written to the rejects file with the byte restored.
    Valid input passes through unchanged; a sequence cut at a read's end waits for
    the next read."""

    STAND_IN_PATTERN = "[\U0010ff80-\U0010ffff]"
    _STAND_IN = re.compile(STAND_IN_PATTERN)

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._held = b""  # an incomplete sequence at the end of the last read
        self._out = b""  # checked bytes not yet handed out (a stand-in is 4 bytes for 1)
        self.replaced = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._out:
            self._out = self._checked(bytes(self._stream.read(size)))
        if size < 0:
            size = len(self._out)
        data, self._out = self._out[:size], self._out[size:]
        return data

    def _checked(self, chunk: bytes) -> bytes:
        data = self._held + chunk
        cut = _complete_prefix(data) if chunk else len(data)  # at the end: all of it
        data, self._held = data[:cut], data[cut:]
        if _is_utf8(data):
            return data
        self.replaced = True
        return data.decode("utf-8", "surrogateescape").translate(_STAND_INS).encode()

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    @classmethod
    def restore(cls, text: str) -> str:
        """``text`` with each stand-in back as the byte it stood for (as a surrogate escape,
        which the rejects file writes out as that byte)."""
        return str(cls._STAND_IN.sub(lambda m: chr(0xDC80 + ord(m.group()) - 0x10FF80), text))


_STAND_INS = {0xDC80 + i: 0x10FF80 + i for i in range(128)}  # surrogate escape -> stand-in


def _is_utf8(data: bytes) -> bool:
    """Arrow's vectorised UTF-8 check of ``data`` as one string: several times faster than
    decoding it into a Python string only to throw that away."""
    offsets = pa.array([0, len(data)], pa.int32()).buffers()[1]
    whole = pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        whole.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _complete_prefix(data: bytes) -> int:
    """Where ``data`` ends but for an incomplete UTF-8 sequence at its end (at most 3 bytes
    held back; anything else is left for the decoder to judge)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= need else len(data) - back
    return len(data)


def _has(rows: pa.Table, column: str) -> bool:
    return column in rows.column_names and rows.column(column).null_count < rows.num_rows


def _convert(name: str, values: pa.ChunkedArray, kind: str, bad: dict[int, str]) -> pa.Array:
    """``values`` (text) as ``kind``; a value that does not convert fails its row."""
    target = FIELD_TYPES[kind]
    text = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if kind == "string":
        return text
    if kind == "bool":
        lowered = pc.utf8_lower(text)
        true, false = pc.is_in(lowered, _TRUE), pc.is_in(lowered, _FALSE)
        wrong = pc.and_(pc.is_valid(text), pc.invert(pc.or_(true, false)))
        for index in pc.indices_nonzero(wrong).to_pylist():
            bad.setdefault(
                index, f"column {clip(name)!r}: {clip(text[index].as_py())!r} is not bool"
            )
        return pc.if_else(wrong, pa.scalar(None, pa.bool_()), true)
    converted, failed = convert_each(text, lambda chunk: chunk.cast(target), target)
    for index in failed:
        bad.setdefault(index, _not_a(name, text[index].as_py(), kind))
    return converted


def _not_a(column: str, value: str, kind: str) -> str:
    return f"column {clip(column)!r}: {clip(value)!r} is not {kind}"


@dataclass
class Numbering:
    """The row numbers of one block: runs of consecutive numbers (rows pyarrow left out
    for their width fall between runs)."""

    starts: list[int]  # index in the block where each run starts
    numbers: list[int]  # the row number at that index
    last: int

    def of(self, index: int) -> int:
        run = bisect.bisect_right(self.starts, index) - 1
        return self.numbers[run] + index - self.starts[run]


class RowNumbers:
    """Row numbers of what pyarrow's reader hands over, counting the rows it left out for
    their width (it reports those to :meth:`skip` while parsing, before their block)."""

    def __init__(self) -> None:
        self.next = 2  # the header is row 1
        self.skipped: list[tuple[int, str, str]] = []

    def skip(self, row: Any) -> str:
        number = row.number if row.number is not None and row.number > 0 else self.next
        reason = f"{row.actual_columns} columns, the header has {row.expected_columns}"
        self.skipped.append((number, reason, Utf8Guard.restore(row.text)))
        return "skip"

    def take(self, count: int) -> Numbering:
        left_out = sorted(n for n, _, _ in self.skipped if n >= self.next)
        starts, numbers, index = [0], [self.next], 0
        for number in left_out:
            run = number - self.next
            if run >= count - index:
                break
            index += run
            self.next = number + 1
            starts.append(index)
            numbers.append(self.next)
        self.next += count - index
        return Numbering(starts, numbers, self.next - 1)

    def passed(self, up_to: int | None) -> list[tuple[int, str, str]]:
        """The left-out rows numbered up to ``up_to`` (all when None), once each."""
        done = [s for s in self.skipped if up_to is None or s[0] <= up_to]
        self.skipped = [s for s in self.skipped if not (up_to is None or s[0] <= up_to)]
        return sorted(done)


@dataclass
class Block:
    """A block of the CSV reader: its rows (every column as bytes), their row numbers,
    and the rows left out before its last one (rejected in row order with the rest)."""

    rows: pa.Table
    numbers: Numbering
    left_out: list[tuple[int, str, str]]


def blocks_ahead(reader: pacsv.CSVStreamingReader, numbers: RowNumbers) -> Iterator[Block]:
    """The reader's blocks, each read on a thread of its own while the caller converts
    and commits the one before (pyarrow's parse releases the GIL: it runs on the other
    core). A block is numbered as soon as it is read, before the next read starts:
    the reader reports the rows it leaves out to ``numbers`` while it parses, so their
    order with the blocks stays what one thread would see. A read that fails raises
    when the caller asks for that block, after the blocks before it."""

    def read() -> Block | None:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return None
        rows = pa.Table.from_batches([batch])
        numbering = numbers.take(rows.num_rows)
        return Block(rows, numbering, numbers.passed(numbering.last))

    # not a ThreadPoolExecutor: its threads are joined at exit, and a caller that stops
    # early (bad input) must not wait on a read blocked on a pipe
    ahead: Future[Block | None] = Future()
    _start_read(ahead, read)
    while (block := ahead.result()) is not None:
        ahead = Future()
        _start_read(ahead, read)
        yield block


def _start_read(into: Future[Block | None], read: Callable[[], Block | None]) -> None:
    def run() -> None:
        try:
            into.set_result(read())
        except BaseException as exc:  # handed to the caller with the block it stands for
            into.set_exception(exc)

    threading.Thread(target=run, name="csv-read-ahead", daemon=True).start()


SNIFFED = (",", ";", "\t", "|")


def sniff_delimiter(head: bytes) -> str:
    """The delimiter of a CSV whose header line is at the start of ``head``: the one of
    ``SNIFFED`` it holds most of outside quotes (Grafana writes ``;``, spreadsheets tab);
    a comma when it holds none."""
    line = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    outside, quoted = [], False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted:
            outside.append(char)
    counts = {d: outside.count(d) for d in SNIFFED}
    best = max(SNIFFED, key=lambda d: counts[d])  # ties: the earlier in SNIFFED
    return best if counts[best] else ","


def header_names(head: bytes, delimiter: str, source: str) -> list[str]:
    """The column names of the header row (the first record of ``head``)."""
    lines = head.split(b"\n")
    end = 1
    while end < len(lines) and b"\n".join(lines[:end]).count(b'"') % 2:
        end += 1  # a quoted name holds a line feed
    head = b"\n".join(lines[:end])
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{source}:1: the header is not valid UTF-8 ({exc.reason} at byte {exc.start})",
            hint="convert the file to UTF-8 (iconv -f LATIN1 -t UTF-8)",
            source=source,
            line=1,
        ) from None
    try:
        names = next(stdcsv.reader(io.StringIO(text), delimiter=delimiter), None)
    except stdcsv.Error as exc:
        raise BadInput(f"{source}:1: unreadable header ({exc})", source=source, line=1) from None
    if not names:
        raise BadInput(
            f"{source}: no header row",
            hint="the first line must name the columns",
            source=source,
            line=1,
        )
    return names


def check_header(names: list[str], csv: CsvOptions, source: str) -> str:
    """Refuse a header that names a column twice, has a column without a name, or lacks a
    column the options name; returns the timestamp column."""
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if not name:
            raise _header_error(
                source,
                f"column {position} has no name in the header"
                + (" (an index column, as pandas writes by default?)" if position == 1 else ""),
                "name it in the header, or write the file without it (pandas: index=False)",
            )
        if name in seen:
            raise _header_error(
                source,
                f"column {name!r} appears twice in the header (again as column {position})",
                "rename one of them in the header",
            )
        seen.add(name)
    ts_column = csv.ts_column or _candidate(names)
    if not ts_column:
        raise _header_error(
            source,
            f"no timestamp column ({', '.join(TS_CANDIDATES)}) in the header",
            f"name the timestamp column; the columns are: {clip(', '.join(names), 300)}",
        )
    wanted = [("timestamp", ts_column), *(("tag", t) for t in csv.tags)]
    if csv.table_column:
        wanted.append(("table", csv.table_column))
    for role, name in wanted:
        if name not in seen:
            raise _header_error(
                source,
                f"no {role} column {name!r} in the header",
                f"the columns are: {clip(', '.join(names), 300)}",
            )
    for name in names:
        if name != ts_column and name == TIME_KEY:
            raise _header_error(
                source,
                "a column 'time' that is not the timestamp column (InfluxDB refuses the "
                "key 'time' too)",
                "make it the timestamp column, or rename it",
            )
        if not is_valid("field", name):
            raise _header_error(source, f"invalid column name {clip(name)!r}", "rename it")
    return ts_column


def _header_error(source: str, what: str, hint: str) -> BadInput:
    return BadInput(f"{source}:1: {what}", hint=hint, source=source, line=1)


def _candidate(names: list[str]) -> str:
    """The first of ``TS_CANDIDATES`` the header has, in any case (Grafana writes
    ``Time``); "" when none."""
    for candidate in TS_CANDIDATES:
        for name in names:
            if name.lower() == candidate:
                return name
    return ""


def _row_text(raw: pa.Table, index: int, delimiter: str) -> str:
    """A row (read as bytes) as CSV text again, for the rejects file; bytes that are not
    UTF-8 go back out as they came."""
    out = io.StringIO()
    values = [
        None if v is None else Utf8Guard.restore(v.decode("utf-8"))
        for v in (raw.column(i)[index].as_py() for i in range(raw.num_columns))
    ]
    stdcsv.writer(out, delimiter=delimiter, lineterminator="").writerow(
        ["" if v is None else v for v in values]
    )
    return out.getvalue()


def _peek(stream: BinaryIO) -> bytes:
    """The start of the input, up to and including its first line feed (or all of it)."""
    parts: list[bytes] = []
    reader = getattr(stream, "read1", stream.read)
    while True:
        chunk = reader(BLOCK_BYTES)
        if not chunk:
            break
        parts.append(chunk)
        if b"\n" in chunk:
            break
    return b"".join(parts)


class _Chained(io.RawIOBase):
    """``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            data = self._head if size < 0 else self._head[:size]
            self._head = self._head[len(data) :]
            return data
        return bytes(self._stream.read(size))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
