"""Streaming ingest of line protocol and CSV into a database.

Input is read in blocks, so memory stays bounded whatever its size. Points
are gathered into batches of ``batch_rows`` (one transaction each, all tables
of the batch together); a batch is also committed when ``flush_interval``
seconds have passed since the last commit, so a slow pipe is durable as it
goes. A bad line either stops the ingest (``abort``: nothing of its batch is
written, :class:`BadInput` says how many rows were committed before) or is
written to the rejects file with its reason (``skip``).
"""

from __future__ import annotations

import io
import os
import select
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import zstandard

from engine import lpfast
from engine.database import Batch, Database
from engine.errors import BadInput, InvalidArgument, NotFound
from engine.fileio import IO
from engine.lineprotocol import PRECISION_NS, LineError, Point, UnclosedString, parse
from engine.names import NAME_RULE, is_valid, validate_name
from engine.schema import FIELD_TYPES, TS

BLOCK_BYTES = 1 << 20
Progress = Callable[[int, int], None]  # (bytes read so far, rows committed so far)


@dataclass
class IngestOptions:
    batch_rows: int = 5000
    on_error: str = "abort"  # abort | skip
    rejects: Path | None = None
    precision: str = "ns"  # of the input's timestamps (line protocol)
    flush_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.on_error not in ("abort", "skip"):
            raise InvalidArgument(
                f"invalid on-error policy {self.on_error!r}",
                hint="use abort or skip",
                param="on_error",
            )
        if self.batch_rows < 1:
            raise InvalidArgument("batch size must be at least 1 row")


@dataclass
class IngestReport:
    database: str
    source: str
    rows: int = 0
    tables: list[str] = field(default_factory=list)
    batches: int = 0
    rejected: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1)}


class _Committer:
    """Gathers rows per table and commits them as one transaction per batch."""

    def __init__(self, db: Database, report: IngestReport, options: IngestOptions) -> None:
        self.db = db
        self.report = report
        self.options = options
        self.pending: list[Batch] = []
        self.pending_rows = 0
        self.last_commit = time.monotonic()
        self.tables: set[str] = set()

    def add(self, batch: Batch) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.rows.num_rows
        self.tables.add(batch.table)

    def due(self) -> bool:
        return self.pending_rows >= self.options.batch_rows or (
            self.pending_rows > 0
            and time.monotonic() - self.last_commit >= self.options.flush_interval
        )

    def commit(self) -> None:
        if self.pending:
            try:
                self.db.write(self.pending)
            except InvalidArgument as exc:  # a name or a value the data carries
                raise BadInput(exc.message, exc.hint) from exc
            self.report.rows += self.pending_rows
            self.report.batches += 1
        self.pending, self.pending_rows = [], 0
        self.last_commit = time.monotonic()


# -- line protocol ----------------------------------------------------------------------


def ingest_lp(
    db: Database,
    stream: BinaryIO,
    source: str,
    options: IngestOptions,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest line protocol from ``stream``; see the module docstring for the contract."""
    if options.precision not in PRECISION_NS:
        raise InvalidArgument(
            f"invalid precision {options.precision!r}", hint="use ns, us, ms or s"
        )
    report = IngestReport(database=db.name, source=source)
    started = time.perf_counter()
    committer = _Committer(db, report, options)
    rejects = _Rejects(options.rejects)
    reader = _LineProtocol(db, source, options, report, committer, rejects)

    def flush_due_in() -> float | None:
        """Seconds until the rows gathered so far must be committed (None: nothing gathered)."""
        if not reader.gathered():
            return None
        return max(0.0, options.flush_interval - (time.monotonic() - committer.last_commit))

    try:
        for block, first_line in _line_blocks(stream, report, flush_due_in):
            if block is not None:
                reader.feed(block, first_line)
            if block is None or reader.due():
                reader.flush()
            if progress:
                progress(report.bytes, report.rows)
        reader.finish()
    except BaseException as exc:
        _note_committed(exc, report.rows, db.last_lsn)
        raise
    finally:
        rejects.close()
    report.tables = sorted(committer.tables)
    report.seconds = time.perf_counter() - started
    return report


class _LineProtocol:
    """Blocks of line protocol to committed batches.

    Plain lines go through :mod:`engine.lpfast` a slice of at most a batch at a time;
    from a point whose string spans lines, the block is parsed as text by the exact
    parser, and a point still open at the block's end is carried into the next block.
    """

    def __init__(
        self,
        db: Database,
        source: str,
        options: IngestOptions,
        report: IngestReport,
        committer: _Committer,
        rejects: _Rejects,
    ) -> None:
        self.source = source
        self.options = options
        self.report = report
        self.committer = committer
        self.rejects = rejects
        self.kinds = _FieldKinds(db, source)
        self.divisor = PRECISION_NS[db.settings.precision]
        self.builder = _PointColumns(self.kinds, self.divisor)
        self.carry = b""  # the start of a point whose string is still open
        self.carry_line = 0

    def gathered(self) -> bool:
        return bool(self.builder.rows or self.committer.pending_rows)

    def due(self) -> bool:
        return self.committer.due() or (
            self.builder.rows > 0
            and time.monotonic() - self.committer.last_commit >= self.options.flush_interval
        )

    def feed(self, block: bytes, first_line: int) -> None:
        if self.carry:
            block, first_line, self.carry = self.carry + block, self.carry_line, b""
        try:
            lines = lpfast.split_lines(block)
        except UnicodeDecodeError as exc:
            bad_line = first_line + block.count(b"\n", 0, exc.start)
            raise BadInput(f"line {bad_line}: input is not valid UTF-8", line=bad_line) from exc
        originals, too_long = lines, self._too_long(lines, first_line)
        if too_long:
            limit = self.kinds.db.settings.max_line_bytes
            lines = pc.if_else(pc.greater(pc.binary_length(lines), limit), "", lines)
        plain = lpfast.plain_mask(lines)
        ends_input = not block.endswith(b"\n")
        now = time.time_ns()
        start = 0
        while start < len(lines):
            room = max(1, self.options.batch_rows - self.committer.pending_rows)
            end = min(len(lines), start + room)
            parsed = lpfast.parse_lines(
                lines.slice(start, end - start),
                plain[start:end],
                first_line + start,
                precision=self.options.precision,
                divisor=self.divisor,
                default_time=now,
                ends_input=ends_input and end == len(lines),
            )
            refused = parsed.errors + [e for i, e in too_long.items() if start <= i < end]
            self._refuse(sorted(refused, key=lambda e: e.line), originals, first_line)
            self._add(parsed, originals, first_line)
            if parsed.open_string_at is not None:
                at = start + parsed.open_string_at
                rest = "\n".join(lines.slice(at).to_pylist()) + ("" if ends_input else "\n")
                self._text(rest, first_line + at, final=ends_input)
                return
            start = end
            if self.due():
                self.flush()

    def flush(self) -> None:
        for batch in self.builder.take():
            self.committer.add(batch)
        self.committer.commit()

    def finish(self) -> None:
        if self.carry:
            text, self.carry = self.carry.decode(), b""
            self._text(text, self.carry_line, final=True)
        self.flush()

    def _too_long(self, lines: pa.StringArray, first_line: int) -> dict[int, LineError]:
        """Lines over the database's max_line_bytes, by index, each with its refusal."""
        limit = self.kinds.db.settings.max_line_bytes
        lengths = pc.binary_length(lines)
        if not len(lines) or pc.max(lengths).as_py() <= limit:
            return {}
        over = pc.indices_nonzero(pc.greater(lengths, limit)).to_pylist()
        return {
            i: LineError(
                f"line of {lengths[i].as_py():,} bytes, more than max_line_bytes ({limit:,})",
                first_line + i,
                0,
            )
            for i in over
        }

    def _refuse(self, errors: list[LineError], lines: pa.StringArray, first_line: int) -> None:
        for err in errors:
            self._reject(err, lines[err.line - first_line].as_py())

    def _reject(self, err: LineError, line: str) -> None:
        reason = clip(err.reason, 300)  # a 10 MB value is never echoed whole
        if self.options.on_error == "abort":
            raise BadInput(
                f"{self.source}:{err.line}:{err.column}: {reason}",
                hint="fix the line, or skip bad lines into a rejects file; "
                "re-running is safe (writes are upserts)",
                source=self.source,
                line=err.line,
                column=err.column,
            )
        self.rejects.write(line, f"{self.source}:{err.line}:{err.column}: {reason}")
        self.report.rejected += 1

    def _add(self, parsed: lpfast.Parsed, lines: pa.StringArray, first_line: int) -> None:
        """The slice's rows to the committer, per table in line order (the last write of a
        key wins), after checking their field kinds and limits in line order; a refused
        line is rejected (or stops the ingest) on its own."""
        items: list[tuple[int, lpfast.Part | Point]] = [
            (part.rows[lpfast.LINE][0].as_py(), part) for part in parsed.parts
        ]
        items += [(point.line, point) for point in parsed.points]
        items.sort(key=lambda item: item[0])
        points = _PointColumns(self.kinds, self.divisor, with_lines=True)
        pieces: dict[str, list[pa.Table]] = {}
        tags: dict[str, dict[str, None]] = {}
        for _line, item in items:
            if isinstance(item, Point):
                try:
                    points.add(item)
                except LineError as err:
                    self._reject(err, lines[err.line - first_line].as_py())
                continue
            problem = self.kinds.problem(item.table, item.tags, item.kinds)
            if problem is not None:
                for number in item.rows[lpfast.LINE].to_pylist():
                    self._reject(LineError(problem, number, 0), lines[number - first_line].as_py())
                continue
            pieces.setdefault(item.table, []).append(item.rows)
            tags.setdefault(item.table, {}).update(dict.fromkeys(item.tags))
        for batch in points.take():
            pieces.setdefault(batch.table, []).append(batch.rows)
            tags.setdefault(batch.table, {}).update(dict.fromkeys(batch.tags))
        for table, parts in pieces.items():
            self.committer.add(Batch(table, _in_line_order(parts), list(tags[table])))

    def _text(self, text: str, first_line: int, *, final: bool) -> None:
        """Parse ``text`` with the exact parser; with more input to come, a point still open
        at its end is carried over."""
        now = time.time_ns()
        offset, line = 0, first_line
        while offset < len(text):
            try:
                for point in parse(
                    text[offset:],
                    precision=self.options.precision,
                    default_time=now,
                    first_line=line,
                ):
                    self.builder.add(point)
                    if self.builder.rows + self.committer.pending_rows >= self.options.batch_rows:
                        self.flush()
                return
            except UnclosedString as err:
                if final:
                    self._reject_text(err, text, offset, line)
                    return
                at = offset + err.start
                self.carry = text[at:].encode()
                self.carry_line = line + text.count("\n", offset, at)
                return
            except LineError as err:
                offset, line = self._reject_text(err, text, offset, line)

    def _reject_text(self, err: LineError, text: str, offset: int, line: int) -> tuple[int, int]:
        """Reject the line of ``err``; returns where parsing resumes (offset, line)."""
        start = _line_start(text, offset, err.line - line)
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        self._reject(err, text[start:end].rstrip("\n"))
        return end, err.line + 1


def _naming_problem(table: str, tags: list[str], kinds: dict[str, str]) -> str | None:
    """Keys a line may not use: ``time`` (InfluxDB 1.x refuses it the same way), ``ts``
    (our timestamp column), one key as both tag and field (one of the two values would
    be lost), and names this version cannot store yet."""
    for what, keys in (("tag", tags), ("field", list(kinds))):
        for key in keys:
            if key == "time":
                return f"{what} key 'time' on measurement {clip(table)!r} is invalid"
            if key == TS:
                return f"{what} key {TS!r} is reserved for the timestamp"
            if not is_valid(what, key):
                return f"invalid {what} name {clip(key)!r}: {NAME_RULE}"
    both = sorted(set(tags) & set(kinds))
    if both:
        return f"key {clip(both[0])!r} is both a tag and a field in this line"
    if not is_valid("table", table):
        return f"invalid table name {clip(table)!r}: {NAME_RULE}"
    return None


def _note_committed(exc: BaseException, rows: int, lsn: int) -> None:
    """Tell whoever reports ``exc`` (an error, Ctrl-C, SIGTERM) what was durably committed
    before it: the rows, and the LSN they reach."""
    exc.committed_rows = rows  # type: ignore[attr-defined]
    exc.committed_lsn = lsn  # type: ignore[attr-defined]


def clip(text: str, limit: int = 120) -> str:
    """``text``, or its start and end around the length when it is longer than ``limit``."""
    if len(text) <= limit:
        return text
    return f"{text[: limit * 2 // 3]}…({len(text):,} characters)…{text[-(limit // 4) :]}"


def _in_line_order(parts: list[pa.Table]) -> pa.Table:
    rows = parts[0]
    if len(parts) > 1:
        rows = pa.concat_tables(parts, promote_options="default")
        rows = rows.take(pc.sort_indices(rows[lpfast.LINE]))
    return rows.drop_columns([lpfast.LINE])


def _line_blocks(
    stream: BinaryIO, report: IngestReport, flush_due_in: Callable[[], float | None]
) -> Iterator[tuple[bytes | None, int]]:
    """Blocks of whole lines with the number of their first line; ``(None, n)`` when a pipe
    stayed quiet until a flush was due."""
    carry = b""
    line = 1
    for chunk in _chunks(stream, flush_due_in):
        if chunk is None:
            yield None, line
            continue
        report.bytes += len(chunk)
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        block, carry = data[:cut], data[cut:]
        yield block, line
        line += block.count(b"\n")
    if carry:
        yield carry, line


def _chunks(stream: BinaryIO, flush_due_in: Callable[[], float | None]) -> Iterator[bytes | None]:
    """Chunks of input as they arrive; ``None`` when a pipe was idle until a flush was due.

    A pipe or FIFO is read from its descriptor after ``select()``, so a slow producer's
    lines are committed on time instead of waiting for the next chunk; files and
    decompressing streams are simply read.
    """
    fd = _pipe_descriptor(stream)
    if fd is None:
        reader = getattr(stream, "read1", stream.read)
        while chunk := reader(BLOCK_BYTES):
            yield chunk
        return
    while True:
        ready, _, _ = select.select([fd], [], [], flush_due_in())
        if not ready:
            yield None
            continue
        chunk = _read_available(fd)
        if not chunk:
            return
        yield chunk


def _read_available(fd: int) -> bytes:
    """What the pipe holds now, up to a block: a pipe gives at most 64 KiB a read, and
    blocks that small would cost the vectorised parser its advantage. Never waits once
    something was read."""
    parts = [os.read(fd, BLOCK_BYTES)]
    size = len(parts[0])
    while parts[-1] and size < BLOCK_BYTES and select.select([fd], [], [], 0)[0]:
        parts.append(os.read(fd, BLOCK_BYTES - size))
        size += len(parts[-1])
    if not parts[-1] and len(parts) > 1:
        parts.pop()  # end of input: the next read returns b"" again and ends the loop
    return b"".join(parts)


def _pipe_descriptor(stream: BinaryIO) -> int | None:
    if not isinstance(stream, io.BufferedReader):
        return None
    fd = stream.fileno()
    return None if stat.S_ISREG(os.fstat(fd).st_mode) else fd


def _line_start(text: str, offset: int, lines_down: int) -> int:
    pos = offset
    for _ in range(lines_down):
        pos = text.index("\n", pos) + 1
    return pos


class _FieldKinds:
    """The kind of every field per table: the stored schema's, then the first seen here;
    and the limits on a line's tags and a table's fields."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source
        self.max_tags = db.settings.max_tags_per_series
        self.max_fields = db.settings.max_fields_per_table
        self._tables: dict[str, dict[str, str]] = {}

    def problem(self, table: str, tags: list[str], kinds: dict[str, str]) -> str | None:
        """Why a line of ``table`` with tag keys ``tags`` and fields ``kinds`` is refused
        (``None``: it is not); the kinds of an accepted line are recorded."""
        if len(tags) > self.max_tags:
            return (
                f"{len(tags)} tag keys, more than max_tags_per_series ({self.max_tags}) of "
                f"database {self.db.name}"
            )
        naming = _naming_problem(table, tags, kinds)
        if naming is not None:
            return naming
        known = self._known(table)
        for key, kind in kinds.items():
            stored = known.get(key, kind)
            if stored != kind:
                return (
                    f"field {clip(key)!r} of table {clip(table)} is {stored}, "
                    f"this line writes {kind}"
                )
        new = sum(1 for key in kinds if key not in known)
        if new and len(known) + new > self.max_fields:
            return (
                f"table {clip(table)} would have {len(known) + new} fields, more than "
                f"max_fields_per_table ({self.max_fields}) of database {self.db.name}"
            )
        known.update(kinds)
        return None

    def __getitem__(self, table: str) -> dict[str, str]:
        return self._known(table)

    def _known(self, table: str) -> dict[str, str]:
        if table not in self._tables:
            try:
                self._tables[table] = dict(self.db.schema(table).fields)
            except Exception:
                self._tables[table] = {}
        return self._tables[table]


class _PointColumns:
    """Points gathered into columns per table, their field kinds checked."""

    def __init__(self, kinds: _FieldKinds, divisor: int, *, with_lines: bool = False) -> None:
        self.kinds = kinds
        self.divisor = divisor
        self.with_lines = with_lines
        self.rows = 0
        self._tables: dict[str, dict[str, Any]] = {}

    def add(self, point: Point) -> None:
        """Gather ``point``; raises :class:`LineError` if its line is refused."""
        problem = self.kinds.problem(point.measurement, list(point.tags), point.kinds)
        if problem is not None:
            raise LineError(problem, point.line, 0)
        table = self._tables.setdefault(
            point.measurement, {"n": 0, TS: [], "lines": [], "tags": {}, "fields": {}}
        )
        n = table["n"]
        for columns, values in ((table["tags"], point.tags), (table["fields"], point.fields)):
            for key, value in values.items():
                column = columns.get(key)
                if column is None:
                    column = columns[key] = [None] * n
                column.append(value)
            for column in columns.values():
                if len(column) == n:
                    column.append(None)
        assert point.time is not None
        table[TS].append(point.time // self.divisor)
        table["lines"].append(point.line)
        table["n"] = n + 1
        self.rows += 1

    def take(self) -> list[Batch]:
        batches = []
        for name, table in self._tables.items():
            kinds = self.kinds[name]
            columns: dict[str, pa.Array] = {TS: pa.array(table[TS], pa.int64())}
            for key, values in table["tags"].items():
                columns[key] = pa.array(values, pa.string())
            for key, values in table["fields"].items():
                columns[key] = pa.array(values, FIELD_TYPES[kinds[key]])
            if self.with_lines:
                columns[lpfast.LINE] = pa.array(table["lines"], pa.int64())
            batches.append(Batch(name, pa.table(columns), list(table["tags"])))
        self._tables = {}
        self.rows = 0
        return batches


class _Rejects:
    """The rejects file: created on the first reject, owner-only like every file we make."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._out: TextIO | None = None
        if path is not None and not path.parent.is_dir():
            raise NotFound(
                f"the directory of the rejects file {path} does not exist",
                hint="create it, or name a file in an existing directory",
            )
        if path is not None and path.is_dir():
            raise InvalidArgument(f"the rejects file {path} is a directory")

    def write(self, line: str, reason: str) -> None:
        path = self.path
        if path is None:
            return
        if self._out is None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            fd = IO.guard(lambda: os.open(path, flags, 0o600), path)
            self._out = os.fdopen(fd, "w", encoding="utf-8")
        self._out.write(f"# {reason}\n{line}\n")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


# -- CSV ------------------------------------------------------------------------------


@dataclass
class CsvOptions:
    table: str = ""
    ts_column: str = "ts"
    ts_format: str = "auto"  # auto | s | ms | us | ns | strptime format
    tags: list[str] = field(default_factory=list)
    table_column: str | None = None  # the table of each row comes from this column
    schema: dict[str, str] = field(
        default_factory=dict
    )  # field -> float64|int64|uint64|bool|string
    delimiter: str = ","
    tz: str = "UTC"  # the zone of timestamps written without one

    def __post_init__(self) -> None:
        if self.delimiter in ("\\t", "tab"):
            self.delimiter = "\t"
        if len(self.delimiter) != 1 or self.delimiter in ('"', "\n", "\r"):
            raise InvalidArgument(
                f"invalid delimiter {self.delimiter!r}",
                hint="one character: , ; | or tab",
                param="delimiter",
            )


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


_EPOCH_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def ingest_csv(
    db: Database,
    stream: BinaryIO,
    source: str,
    csv: CsvOptions,
    options: IngestOptions,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest a CSV file with a header row; one transaction per block of rows."""
    report = IngestReport(database=db.name, source=source)
    started = time.perf_counter()
    committer = _Committer(db, report, options)
    convert: dict[str, pa.DataType] = {name: FIELD_TYPES[kind] for name, kind in csv.schema.items()}
    convert |= {tag: pa.string() for tag in csv.tags}
    if csv.table_column:
        convert[csv.table_column] = pa.string()
    if csv.ts_format in _EPOCH_UNITS:
        convert[csv.ts_column] = pa.int64()
    elif csv.ts_format != "auto":
        convert[csv.ts_column] = pa.string()
    counted = _CountingReader(stream, report)
    try:
        reader = pacsv.open_csv(
            counted,
            read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
            # quoted values may hold newlines (RFC 4180)
            parse_options=pacsv.ParseOptions(newlines_in_values=True, delimiter=csv.delimiter),
            convert_options=pacsv.ConvertOptions(column_types=convert, strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc:
        raise BadInput(f"{source}: {exc}", source=source) from None
    _check_header(reader.schema.names, csv, source)
    try:
        for record_batch in _csv_batches(reader, source, lambda: report.rows):
            rows = pa.Table.from_batches([record_batch])
            timestamps = _csv_timestamps(
                rows.column(csv.ts_column), csv, db.settings.precision, source
            )
            rows = rows.set_column(rows.column_names.index(csv.ts_column), TS, timestamps)
            for start in range(0, rows.num_rows, options.batch_rows):  # a transaction each
                for table, part in _by_table(rows.slice(start, options.batch_rows), csv, source):
                    committer.add(Batch(table, part, list(csv.tags)))
                committer.commit()
            if progress:
                progress(report.bytes, report.rows)
    except BaseException as exc:
        _note_committed(exc, report.rows, db.last_lsn)
        raise
    report.tables = sorted(committer.tables)
    report.seconds = time.perf_counter() - started
    return report


def _check_header(names: list[str], csv: CsvOptions, source: str) -> None:
    """The header must name each column once and hold every column the options name."""
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if name in seen:
            raise BadInput(
                f"{source}:1: column {name!r} appears twice in the header "
                f"(again as column {position})",
                hint="rename one of them in the header",
                source=source,
                line=1,
            )
        seen.add(name)
    wanted = [("timestamp", csv.ts_column), *(("tag", t) for t in csv.tags)]
    if csv.table_column:
        wanted.append(("table", csv.table_column))
    for role, name in wanted:
        if name not in seen:
            raise BadInput(
                f"{source}:1: no {role} column {name!r} in the header",
                hint=f"the columns are: {', '.join(names)}",
                source=source,
                line=1,
            )


def _by_table(rows: pa.Table, csv: CsvOptions, source: str) -> list[tuple[str, pa.Table]]:
    """The block's rows per target table (one table, or one per value of --table-column)."""
    if not csv.table_column:
        return [(csv.table, rows)]
    if csv.table_column not in rows.column_names:
        raise BadInput(f"{source}: no table column {csv.table_column!r}", source=source)
    names = rows.column(csv.table_column)
    if names.null_count:
        raise BadInput(
            f"{source}: rows without a table name in {csv.table_column!r}", source=source
        )
    rest = rows.drop_columns([csv.table_column])
    parts = []
    for name in pc.unique(names).to_pylist():
        try:
            validate_name("table", name)
        except InvalidArgument as exc:
            raise BadInput(
                f"{source}: {exc.message} in column {csv.table_column!r}",
                hint=exc.hint,
                source=source,
            ) from None
        parts.append((name, rest.filter(pc.equal(names, name))))
    return parts


def _csv_batches(
    reader: Any, source: str, rows_before: Callable[[], int]
) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise BadInput(
                f"{source}: after row {rows_before()}: {exc}",
                hint="fix the row, or give column types explicitly",
                source=source,
            ) from None


def _csv_timestamps(
    values: pa.ChunkedArray, csv: CsvOptions, precision: str, source: str
) -> pa.ChunkedArray:
    unit_ns = {"ns": 1, "us": 1_000, "ms": 1_000_000}[precision]
    ts_format = csv.ts_format
    kind = values.type
    if values.null_count:
        raise BadInput(f"{source}: rows without a timestamp", source=source)
    if ts_format == "auto" and pa.types.is_integer(kind):
        ts_format = _epoch_unit(values, source)
    if ts_format in _EPOCH_UNITS:
        scaled = pa.compute.multiply(values.cast(pa.int64()), _EPOCH_UNITS[ts_format])
        return pa.compute.divide(scaled, unit_ns)
    if ts_format != "auto":
        try:
            parsed = pa.compute.strptime(values, format=ts_format, unit="ns", error_is_null=False)
        except pa.ArrowInvalid as exc:
            raise BadInput(
                f"{source}: timestamp does not match {ts_format!r}: {exc}", source=source
            ) from None
        return _in_zone(parsed, csv.tz, source)
    if pa.types.is_timestamp(kind):
        return values if kind.tz else _in_zone(values, csv.tz, source)
    raise BadInput(
        f"{source}: timestamp column has {kind} values",
        hint="give the timestamp format (s, ms, us, ns, or a strptime format such as "
        "%Y-%m-%d %H:%M:%S)",
        source=source,
    )


def _epoch_unit(values: pa.ChunkedArray, source: str) -> str:
    """The unit of epoch integers, from their magnitude (today is about 1.7e9 s, 1.7e12 ms,
    1.7e15 us, 1.7e18 ns): seconds are never taken for nanoseconds in 1970."""
    largest = pa.compute.max(pa.compute.abs(values.cast(pa.int64()))).as_py() or 0
    for unit, below in (("s", 10**11), ("ms", 10**14), ("us", 10**17)):
        if largest < below:
            return unit
    return "ns"


def _in_zone(values: Any, tz: str, source: str) -> Any:
    """Naive timestamps read as times in ``tz``, as UTC."""
    naive = values.cast(pa.timestamp(values.type.unit))
    try:
        zoned = pa.compute.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="earliest")
    except (pa.ArrowInvalid, pa.ArrowKeyError, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(f"unknown time zone {tz!r} ({exc})", param="tz") from None
    return zoned.cast(pa.timestamp(values.type.unit, tz="UTC"))


class _CountingReader:
    """A file wrapper that counts bytes read, for progress."""

    def __init__(self, stream: BinaryIO, report: IngestReport) -> None:
        self._stream = stream
        self._report = report
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._report.bytes += len(data)
        return data

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def open_source(path: str) -> tuple[BinaryIO, int | None, Callable[[], int] | None]:
    """Open ``path`` (``-`` is standard input) for ingest, decompressing .gz and .zst.

    Returns the stream, its size on disk when known, and how far into the file on disk
    reading has got (for progress: decompressed bytes would overrun the file's size).
    """
    import gzip
    import sys

    if path == "-":
        return sys.stdin.buffer, None, None
    file = Path(path)
    if not file.exists():
        raise NotFound(f"no such input file: {path}")
    if not file.is_file():
        raise InvalidArgument(f"input {path} is not a file")
    size = file.stat().st_size
    raw = IO.guard(lambda: file.open("rb"), file)
    if file.suffix == ".gz":
        gz = _Decompressing(gzip.GzipFile(fileobj=raw), path, "gzip")
        return cast(BinaryIO, gz), size, raw.tell
    if file.suffix in (".zst", ".zstd"):
        return cast(BinaryIO, _Decompressing(_ZstdFrames(raw), path, "zstd")), size, raw.tell
    return raw, size, raw.tell


class _ZstdFrames:
    """zstd frames one after the other, decoded as they come; input that ends inside a
    frame is an error (zstandard's stream reader would end quietly, losing the rest)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._started = False

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self._raw.read(BLOCK_BYTES)
            if not chunk:
                if self._started and not self._frame.eof:
                    raise EOFError("the input ends inside a zstd frame (cut short)")
                return b""
            out = []
            while chunk:
                if self._frame.eof:
                    self._frame = zstandard.ZstdDecompressor().decompressobj()
                self._started = True
                out.append(self._frame.decompress(chunk))
                chunk = self._frame.unused_data if self._frame.eof else b""
            data = b"".join(out)
            if data:
                return data

    def close(self) -> None:
        self._raw.close()


class _Decompressing(io.RawIOBase):
    """A decompressing reader whose damage (not compressed at all, cut short, corrupt)
    is bad input naming the file, not a library's exception."""

    def __init__(self, stream: Any, path: str, kind: str) -> None:
        self._stream = stream
        self._path = path
        self._kind = kind

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            return bytes(self._stream.read(size))
        except (OSError, EOFError, ValueError, zstandard.ZstdError) as exc:
            raise BadInput(
                f"{self._path}: not a valid {self._kind} file, or cut short ({exc})",
                hint=f"check the file (e.g. '{'gzip -t' if self._kind == 'gzip' else 'zstd -t'} "
                f"{self._path}'), or rename it if it is not compressed",
                source=self._path,
            ) from None

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()
