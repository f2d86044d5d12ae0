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

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from engine.arrowmods import pa, pc
from engine.db.database import Batch, Database
from engine.errors import BadInput, InvalidArgument, NotFound
from engine.ingest import lpfast
from engine.ingest.committer import Committer
from engine.ingest.inputs import line_blocks
from engine.ingest.lineprotocol import PRECISION_NS, LineError, Point, UnclosedString, parse
from engine.io.fileio import IO
from engine.names import NAME_RULE, TIME_KEY, column_for_key, is_valid
from engine.storage import retention
from engine.storage.schema import FIELD_TYPES, TS

Progress = Callable[[int, int], None]  # (bytes read so far, rows committed so far)


@dataclass
class IngestOptions:
    batch_rows: int = 5000
    on_error: str = "abort"  # abort | skip
    rejects: Path | None = None
    precision: str = "ns"  # of the input's timestamps (line protocol)
    flush_interval: float = 1.0
    default_time: int | None = None  # ns, for points without one (None: the clock's now)

    def __post_init__(self) -> None:
        if self.on_error not in ("abort", "skip"):
            raise InvalidArgument(
                f"invalid on-error policy {self.on_error!r}",
                hint="use abort or skip",
                param="on_error",
            )
        if self.batch_rows < 1:
            raise InvalidArgument("batch size must be at least 1 row")


MAX_REASON_KINDS = 20
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"(?<![\w.-])-?\d+(?:\.\d+)?(?![\w.])")


def reason_kind(reason: str) -> str:
    """A refusal's reason with the values in it left out (quoted text, numbers), so
    refusals of one kind count together: ``invalid value '1x' for field 'v'`` ->
    ``invalid value … for field …``."""
    return _NUMBER.sub("N", _QUOTED.sub("…", reason))


@dataclass
class RejectedReason:
    reason: str  # the kind (reason_kind)
    count: int
    first_where: str  # source:line[:column] of the first one
    first_reason: str  # its reason in full


@dataclass
class IngestReport:
    database: str
    source: str
    rows: int = 0  # written: new ones and ones that overwrote a point
    overwritten: int = 0  # of those, the ones whose key (table, tags, time) was there
    tables: list[str] = field(default_factory=list)
    batches: int = 0
    rejected: int = 0
    bytes: int = 0
    seconds: float = 0.0
    replication: list[str] = field(default_factory=list)  # what the shipper had to say
    # per kind of reason (its text with values left out): how many, and the first one
    rejected_reasons: list[RejectedReason] = field(default_factory=list)

    def count_rejected(self, reason: str, where: str) -> None:
        kind = reason_kind(reason)
        for item in self.rejected_reasons:
            if item.reason == kind:
                item.count += 1
                return
        if len(self.rejected_reasons) < MAX_REASON_KINDS:
            self.rejected_reasons.append(RejectedReason(kind, 1, where, reason))
        else:
            self.rejected_reasons[-1].count += 1  # folded into the last kind kept

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def new(self) -> int:
        return self.rows - self.overwritten

    @property
    def read(self) -> int:
        """Rows (points, CSV rows) read: written or rejected."""
        return self.rows + self.rejected

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "read": self.read,
            "new": self.new,
            "rows_per_second": round(self.rows_per_second, 1),
        }


@dataclass
class Run:
    """One ingest: the database and source, where rows go, where refused lines go, and
    the report; shared by line protocol, CSV and annotated CSV."""

    db: Database
    source: str
    options: IngestOptions
    report: IngestReport
    committer: Committer
    rejects: Rejects

    def refuse(
        self, line: int, reason: str, text: str, *, column: int = 0, dropped: bool = False
    ) -> None:
        """Line (or CSV row) ``line`` is refused: stop the ingest (``abort``), or write it
        with its reason to the rejects file and count it (``skip``). A ``dropped`` point
        (older than the retention period) is rejected that way whatever the policy: it is
        not an error in the input (InfluxDB drops such points too)."""
        reason = clip(reason, 300)  # a 10 MB value is never echoed whole
        where = f"{self.source}:{line}" + (f":{column}" if column else "")
        if self.options.on_error == "abort" and not dropped:
            raise BadInput(
                f"{where}: {reason}",
                hint="fix it, or skip bad lines into a rejects file; "
                "re-running is safe (writes are upserts)",
                source=self.source,
                line=line,
                column=column,
            )
        self.rejects.write(Refused(line, column, reason, text, where))
        self.report.rejected += 1
        self.report.count_rejected(reason, where)

    def expired(self, ts: pa.Array | pa.ChunkedArray) -> list[int]:
        """Indices of the timestamps (in the database's precision) that the retention
        period refuses (engine/storage/retention.py)."""
        oldest = retention.oldest_kept_ns(self.db.settings)
        if oldest is None or not len(ts):
            return []
        old = retention.too_old(ts, oldest, self.db.settings.precision)
        return list(pc.indices_nonzero(pc.fill_null(old, False)).to_pylist())

    def too_old_reason(self) -> str:
        return retention.refusal(self.db.settings)


class Expired(LineError):
    """A point older than the retention period: rejected, never an error that stops."""


@contextmanager
def running(db: Database, source: str, options: IngestOptions) -> Iterator[Run]:
    """An ingest from start to report: the rejects file is opened before anything is
    read, the batches commit while the next ones are parsed (the committer's thread),
    and whatever stops the run learns what was committed before it."""
    report = IngestReport(database=db.name, source=source)
    committer = Committer(db, report, options, pipelined=True)
    run = Run(db, source, options, report, committer, Rejects(options.rejects))
    started = time.perf_counter()
    try:
        try:
            yield run
        finally:
            committer.close()  # the last commit finished, or its failure raised
    except BaseException as exc:
        note_committed(exc, report.rows, db.last_lsn)
        raise
    finally:
        run.rejects.close()
    report.tables = sorted(run.committer.tables)
    report.seconds = time.perf_counter() - started


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
            f"invalid precision {options.precision!r}", hint="use ns, us, ms, s, m or h"
        )
    with running(db, source, options) as run:
        reader = LineProtocolReader(run)
        committer = run.committer

        def flush_due_in() -> float | None:
            """Seconds until the rows gathered so far must be committed (None: nothing)."""
            if not reader.gathered():
                return None
            return max(0.0, options.flush_interval - (time.monotonic() - committer.last_commit))

        for block, first_line in line_blocks(stream, run.report, flush_due_in):
            if block is not None:
                reader.feed(block, first_line)
            if block is None or reader.due():
                reader.flush()
            if progress:
                progress(run.report.bytes, run.report.rows)
        reader.finish()
    return run.report


class LineProtocolReader:
    """Blocks of line protocol to committed batches.

    Plain lines go through :mod:`engine.ingest.lpfast` a slice of at most a batch at a time;
    from a point whose string spans lines, the block is parsed as text by the exact
    parser, and a point still open at the block's end is carried into the next block.
    """

    def __init__(self, run: Run, kinds: FieldKinds | None = None) -> None:
        self.run = run
        self.options = run.options
        self.committer = run.committer
        self.kinds = kinds or FieldKinds(run.db, run.source)
        self.divisor = PRECISION_NS[run.db.settings.precision]
        self.builder = _PointColumns(self.kinds, self.divisor)
        self.carry = b""  # the start of a point whose string is still open
        self.carry_line = 0
        self.spans_lines = False  # a point whose string spans lines was met

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
        except UnicodeDecodeError:
            block = self._without_bad_utf8(block, first_line)
            lines = lpfast.split_lines(block)
        originals, too_long = lines, self._too_long(lines, first_line)
        if too_long:
            limit = self.kinds.db.settings.max_line_bytes
            lines = pc.if_else(pc.greater(pc.binary_length(lines), limit), "", lines)
        plain = lpfast.plain_mask(lines)
        ends_input = not block.endswith(b"\n")
        now = time.time_ns() if self.options.default_time is None else self.options.default_time
        start = 0
        while start < len(lines):
            room = max(1, self.options.batch_rows - self.committer.pending_rows)
            end = min(len(lines), start + room)
            parsed = lpfast.parse_lines(
                lines.slice(start, end - start),
                None if plain is None else plain[start:end],
                first_line + start,
                precision=self.options.precision,
                divisor=self.divisor,
                default_time=now,
                ends_input=ends_input and end == len(lines),
            )
            refused = parsed.errors + [e for i, e in too_long.items() if start <= i < end]
            self._add(parsed, refused, originals, first_line)
            if parsed.open_string_at is not None:
                self.spans_lines = True
                at = start + parsed.open_string_at
                rest = "\n".join(lines.slice(at).to_pylist()) + ("" if ends_input else "\n")
                self._text(rest, first_line + at, final=ends_input)
                return
            start = end
            if self.due():
                self.flush()

    def _without_bad_utf8(self, block: bytes, first_line: int) -> bytes:
        """``block`` with each line that is not UTF-8 rejected and left empty (so the
        numbers of the lines after it stay right)."""
        kept = []
        for number, line in enumerate(block.split(b"\n"), start=first_line):
            try:
                line.decode()
            except UnicodeDecodeError as exc:
                shown = line.decode(errors="surrogateescape")
                self._reject(
                    LineError(f"not valid UTF-8 at byte {exc.start + 1}", number, 0), shown
                )
                line = b""
            kept.append(line)
        return b"\n".join(kept)

    def gather(self) -> None:
        """Hand the points parsed so far to the committer, without committing."""
        for batch in self.builder.take():
            self.committer.add(batch)

    def flush(self) -> None:
        self.gather()
        self.committer.commit()

    def finish(self, *, commit: bool = True) -> None:
        if self.carry:
            text, self.carry = self.carry.decode(), b""
            self._text(text, self.carry_line, final=True)
        if commit:
            self.flush()
        else:
            self.gather()

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

    def _reject(self, err: LineError, line: str) -> None:
        self.run.refuse(
            err.line, err.reason, line, column=err.column, dropped=isinstance(err, Expired)
        )

    def _expired(self, point: Point) -> bool:
        assert point.time is not None
        return bool(self.run.expired(pa.array([point.time // self.divisor], pa.int64())))

    def _without_expired(self, rows: pa.Table, refused: list[LineError]) -> pa.Table:
        """``rows`` without the points the retention period refuses (added to ``refused``)."""
        old = self.run.expired(rows[TS])
        if not old:
            return rows
        numbers = rows[lpfast.LINE].take(pa.array(old)).to_pylist()
        refused += [Expired(self.run.too_old_reason(), number, 0) for number in numbers]
        keep = pc.invert(pc.is_in(pa.array(range(rows.num_rows)), pa.array(old)))
        return rows.filter(keep)

    def _add(
        self,
        parsed: lpfast.Parsed,
        refused: list[LineError],
        lines: pa.StringArray,
        first_line: int,
    ) -> None:
        """The slice's rows to the committer, per table in line order (the last write of a
        key wins), after checking their field kinds and limits in line order; a refused
        line (``refused`` holds those the parser refused) is rejected, or stops the
        ingest, on its own and in line order."""
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
                    if self._expired(item):
                        raise Expired(self.run.too_old_reason(), item.line, 0)
                    points.add(item)
                except LineError as err:
                    refused.append(err)
                continue
            problem = self.kinds.problem(item.table, item.tags, item.kinds)
            if problem is not None:
                numbers = item.rows[lpfast.LINE].to_pylist()
                refused += [LineError(problem, number, 0) for number in numbers]
                continue
            rows = self._without_expired(item.rows, refused)
            if rows.num_rows:
                pieces.setdefault(item.table, []).append(rows)
            tags.setdefault(item.table, {}).update(dict.fromkeys(map(column_for_key, item.tags)))
        for refusal in sorted(refused, key=lambda e: e.line):  # before anything is committed
            self._reject(refusal, lines[refusal.line - first_line].as_py())
        for batch in points.take():
            pieces.setdefault(batch.table, []).append(batch.rows)
            tags.setdefault(batch.table, {}).update(dict.fromkeys(batch.tags))
        for table, parts in pieces.items():
            self.committer.add(Batch(table, _in_line_order(parts), list(tags[table])))

    def _text(self, text: str, first_line: int, *, final: bool) -> None:
        """Parse ``text`` with the exact parser; with more input to come, a point still open
        at its end is carried over."""
        now = time.time_ns() if self.options.default_time is None else self.options.default_time
        offset, line = 0, first_line
        while offset < len(text):
            try:
                for point in parse(
                    text[offset:],
                    precision=self.options.precision,
                    default_time=now,
                    first_line=line,
                ):
                    if self._expired(point):
                        line_text = text[offset:].split("\n")[point.line - line]
                        self._reject(Expired(self.run.too_old_reason(), point.line, 0), line_text)
                        continue
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
    """Keys a line may not use: ``time`` (InfluxDB 1.x refuses it the same way), one key
    as both tag and field (one column could not hold both values), names beyond the name
    rule (longer than 64 KiB)."""
    for what, keys in (("tag", tags), ("field", list(kinds))):
        for key in keys:
            if key == TIME_KEY:
                return f"{what} key 'time' on measurement {clip(table)!r} is invalid"
            if not is_valid(what, key):
                return f"invalid {what} name {clip(key)!r}: {NAME_RULE}"
    both = set(tags) & set(kinds)
    if both:
        return f"key {clip(min(both))!r} is both a tag and a field in this line"
    if not is_valid("table", table):
        return f"invalid table name {clip(table)!r}: {NAME_RULE}"
    return None


def note_committed(exc: BaseException, rows: int, lsn: int) -> None:
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


def _line_start(text: str, offset: int, lines_down: int) -> int:
    pos = offset
    for _ in range(lines_down):
        pos = text.index("\n", pos) + 1
    return pos


class FieldKinds:
    """What each table's lines may carry: the kind of every field column and the set of
    tag columns, from the stored schema and then from the lines accepted here; and the
    limits on a line's tags and a table's fields."""

    def __init__(self, db: Database, source: str) -> None:
        self.db = db
        self.source = source
        self.max_tags = db.settings.max_tags_per_series
        self.max_fields = db.settings.max_fields_per_table
        self._tables: dict[str, tuple[dict[str, str], set[str]]] = {}

    def problem(self, table: str, tags: list[str], kinds: dict[str, str]) -> str | None:
        """Why a line of ``table`` with tag keys ``tags`` and fields ``kinds`` (by key) is
        refused (``None``: it is not); the columns of an accepted line are recorded."""
        if len(tags) > self.max_tags:
            return (
                f"{len(tags)} tag keys, more than max_tags_per_series ({self.max_tags}) of "
                f"database {self.db.name}"
            )
        naming = _naming_problem(table, tags, kinds)
        if naming is not None:
            return naming
        known, known_tags = self._known(table)
        columns = {column_for_key(key): kind for key, kind in kinds.items()}
        for column, kind in columns.items():
            stored = known.get(column, kind)
            if stored != kind:
                return (
                    f"field {clip(column)!r} of table {clip(table)} is {stored}, "
                    f"this line writes {kind}"
                )
            if column in known_tags:
                return f"key {clip(column)!r} of table {clip(table)} is a tag, not a field"
        tag_columns = [column_for_key(key) for key in tags]
        for column in tag_columns:
            if column in known:
                return f"key {clip(column)!r} of table {clip(table)} is a field, not a tag"
        new = sum(1 for column in columns if column not in known)
        if new and len(known) + new > self.max_fields:
            return (
                f"table {clip(table)} would have {len(known) + new} fields, more than "
                f"max_fields_per_table ({self.max_fields}) of database {self.db.name}"
            )
        known.update(columns)
        known_tags.update(tag_columns)
        return None

    def __getitem__(self, table: str) -> dict[str, str]:
        return self._known(table)[0]

    def _known(self, table: str) -> tuple[dict[str, str], set[str]]:
        if table not in self._tables:
            try:
                schema = self.db.schema(table)
                self._tables[table] = (dict(schema.fields), set(schema.tags))
            except Exception:
                self._tables[table] = ({}, set())
        return self._tables[table]


class _PointColumns:
    """Points gathered into columns per table, their field kinds checked."""

    def __init__(self, kinds: FieldKinds, divisor: int, *, with_lines: bool = False) -> None:
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
                columns[column_for_key(key)] = pa.array(values, pa.string())
            for key, values in table["fields"].items():
                column = column_for_key(key)
                columns[column] = pa.array(values, FIELD_TYPES[kinds[column]])
            if self.with_lines:
                columns[lpfast.LINE] = pa.array(table["lines"], pa.int64())
            tags = [column_for_key(key) for key in table["tags"]]
            batches.append(Batch(name, pa.table(columns), tags))
        self._tables = {}
        self.rows = 0
        return batches


@dataclass(frozen=True)
class Refused:
    """A refused line (or CSV row): its number and column in the input, why, its text,
    and where it was as ``source:line[:column]``."""

    line: int
    column: int
    reason: str
    text: str
    where: str


class Rejects:
    """The rejects file: opened (owner-only, like every file we make) before any input is
    read, so a path that cannot be written stops the run before it starts; each reject is
    a ``# <where>: <reason>`` line and then the rejected line as it came."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._out: TextIO | None = None
        if path is None:
            return
        if not path.parent.is_dir():
            raise NotFound(
                f"the directory of the rejects file {path} does not exist",
                hint="create it, or name a file in an existing directory",
            )
        if path.is_dir():
            raise InvalidArgument(f"the rejects file {path} is a directory")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        fd = IO.guard(lambda: os.open(path, flags, 0o600), path)
        self._out = os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape")

    def write(self, refused: Refused) -> None:
        if self._out is not None:
            self._out.write(f"# {refused.where}: {refused.reason}\n{refused.text}\n")

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
