"""One call per administrative operation, returning plain data.

The CLI makes one of these calls per command and renders the result; tests
and library users get the same validation and the same answers.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from engine.arrowmods import pa, pc
from engine.db import health
from engine.db.checkpoint import CheckpointReport, CompactionReport
from engine.db.database import Database
from engine.db.datadir import existing_database_dir, list_databases, writable_database_dir
from engine.db.health import DatabaseHealth
from engine.db.reads import as_table, tally_sorted
from engine.db.recovery import RecoveryReport
from engine.errors import EngineError, InvalidArgument, NotFound
from engine.io import lock
from engine.io.ahead import ahead
from engine.io.fileio import IO
from engine.log import wal
from engine.names import key_of_column, validate_name
from engine.results import (
    Checksum,
    DatabaseListing,
    DatabaseStats,
    DatabaseSummary,
    SettingChange,
    TableDetails,
    TableStats,
    TableSummary,
)
from engine.settings import SETTABLE_KEYS, Settings, canonical_key, ns_per_unit
from engine.storage import checksum as checksum_mod
from engine.storage import segment
from engine.storage.deletes import DeleteReport, DeleteSpec
from engine.storage.rows import iso_time
from engine.storage.schema import TS
from engine.timeparse import parse_time

if TYPE_CHECKING:  # imported where used: most commands never ingest
    from engine.ingest.csvoptions import CsvOptions
    from engine.ingest.pipeline import IngestOptions, IngestReport, Progress

Report = TypeVar("Report")


@contextlib.contextmanager
def reading(data_dir: Path, name: str) -> Iterator[Database]:
    """A read-only view of a database (works while a writer runs)."""
    yield Database.open(existing_database_dir(data_dir, name), name, readonly=True)


@contextlib.contextmanager
def writing(data_dir: Path, name: str, *, background: bool = True) -> Iterator[Database]:
    """The database opened for writing; closed cleanly (with a checkpoint) on success."""
    db = Database.open(writable_database_dir(data_dir, name), name, background=background)
    try:
        yield db
    except BaseException:
        db.abandon()
        raise
    db.close()


def database_summary(data_dir: Path, name: str) -> DatabaseSummary:
    with reading(data_dir, name) as db:
        view = db.view()
        return DatabaseSummary(
            name=name,
            path=str(db.dir),
            uuid=view.manifest.uuid or None,
            epoch=view.manifest.epoch,
            settings=view.settings.to_json(),
            tables=sorted(view.catalog),
            checkpoint_lsn=view.manifest.checkpoint_lsn,
            last_lsn=view.last_lsn,
            writer_pid=lock.holder_pid(db.dir),
            wal_files=[{"file": f, "bytes": b} for f, b in db.wal_files()],
            unclean=db.recovery.needed,
        )


def list_summaries(data_dir: Path) -> list[DatabaseListing]:
    out = []
    for name in list_databases(data_dir):
        try:
            info = database_summary(data_dir, name)
        except EngineError as exc:  # one damaged database must not hide the others
            # the writer's PID needs only the lock file: a runbook asks it of a damaged one
            pid = lock.holder_pid(data_dir / name)
            out.append(DatabaseListing(name, pid, error=exc.message))
            continue
        settings = info.settings
        out.append(
            DatabaseListing(
                name,
                info.writer_pid,
                tables=len(info.tables),
                wal_level=settings["wal_level"],
                precision=settings["precision"],
                last_lsn=info.last_lsn,
            )
        )
    return out


def database_stats(data_dir: Path, name: str) -> DatabaseStats:
    """Storage figures per table: segments, partitions, bytes, rows stored and unflushed."""
    with reading(data_dir, name) as db:
        view = db.view()
        tables = []
        for table in sorted(view.catalog):
            entry = view.manifest.tables.get(table)
            segments = [] if entry is None or table in view.hidden_tables else entry.segments
            memtable_rows = sum(
                b.num_rows for m in view.memtables for b in m.batches.get(table, [])
            )
            tables.append(
                TableStats(
                    table=table,
                    segments=len(segments),
                    partitions=len({s.partition for s in segments}),
                    segment_rows=sum(s.rows for s in segments),
                    segment_bytes=sum(s.bytes for s in segments),
                    wal_rows=memtable_rows,
                )
            )
        return DatabaseStats(
            database=name,
            tables=tables,
            wal_bytes=sum(size for _, size in db.wal_files()),
            checkpoint_lsn=view.manifest.checkpoint_lsn,
            last_lsn=view.last_lsn,
            health=health.database_health(db.dir, name, view.last_lsn),
        )


def database_healths(data_dir: Path, names: list[str] | None = None) -> list[DatabaseHealth]:
    """:func:`engine.db.health.database_health` of the named databases, else of every one
    that opens (a damaged one is left out: ``db list`` names it)."""
    out = []
    for name in names if names is not None else list_databases(data_dir):
        try:
            with reading(data_dir, name) as db:
                out.append(health.database_health(db.dir, name, db.view().last_lsn))
        except EngineError:
            if names is not None:
                raise
    return out


def database_checksum(data_dir: Path, name: str, tables: list[str] | None = None) -> Checksum:
    with reading(data_dir, name) as db:
        view = db.view()
        chosen = tables or sorted(view.catalog)
        digests = [
            checksum_mod.table_digest(t, functools.partial(db.scan_batches, t), view.catalog[t])
            for t in _existing(db, chosen)
        ]
        ordered = sorted(digests, key=lambda t: t.table)
        return Checksum(
            name,
            view.last_lsn,
            checksum_mod.database_digest(ordered),
            sum(t.rows for t in ordered),
            ordered,
        )


def _existing(db: Database, tables: list[str]) -> list[str]:
    for table in tables:
        db.schema(validate_name("table", table))
    return tables


def table_summaries(data_dir: Path, name: str) -> list[TableSummary]:
    stats = {t.table: t for t in database_stats(data_dir, name).tables}
    with reading(data_dir, name) as db:
        return [
            TableSummary(
                table=table,
                tags=len(db.schema(table).tags),
                fields=len(db.schema(table).fields),
                segments=stats[table].segments,
                rows_stored=stats[table].rows,
            )
            for table in db.tables()
        ]


def table_details(data_dir: Path, name: str, table: str) -> TableDetails:
    validate_name("table", table)
    with reading(data_dir, name) as db:
        schema = db.schema(table)
        tally = tally_sorted(db.scan_batches(table), schema.tags)
        ts_type = schema.arrow_schema(db.settings.precision).field(TS).type
    stats = database_stats(data_dir, name).table(table)
    columns = [
        {"column": "ts", "kind": "timestamp", "type": f"timestamp[{_precision(data_dir, name)}]"}
    ]
    columns += [
        {"column": t, "kind": "tag", "type": "string", "key": key_of_column(t)} for t in schema.tags
    ]
    columns += [
        {"column": f, "kind": "field", "type": k, "key": key_of_column(f)}
        for f, k in schema.fields.items()
    ]
    return TableDetails(
        database=name,
        table=table,
        columns=columns,
        rows=tally.rows,
        series=tally.series,
        min_ts=tally.min_ts,
        max_ts=tally.max_ts,
        first=iso_time(pa.scalar(tally.min_ts, ts_type)),
        last=iso_time(pa.scalar(tally.max_ts, ts_type)),
        segments=stats.segments,
        partitions=stats.partitions,
        segment_bytes=stats.segment_bytes,
    )


def _precision(data_dir: Path, name: str) -> str:
    with reading(data_dir, name) as db:
        return db.settings.precision


def drop_table(data_dir: Path, name: str, table: str) -> CheckpointReport:
    with writing(data_dir, name, background=False) as db:
        return db.drop_table(table)


def config_get(data_dir: Path, name: str, key: str | None = None) -> dict[str, Any]:
    with reading(data_dir, name) as db:
        values = db.settings.to_display()
    if key is None:
        return values
    canonical = canonical_key(key) if key not in values else key
    return {canonical: values[canonical]}


def config_set(
    data_dir: Path, name: str, key: str, value: str, *, dry_run: bool = False
) -> SettingChange:
    """Change a setting (logged and fsynced). A retention that expires data now says what
    it removes (``expired``: rows as stored, partitions, tables) and removes it at the
    checkpoint of this close; ``dry_run`` only says what the change would do."""
    canonical = canonical_key(key)
    if dry_run:
        with reading(data_dir, name) as db:
            before = db.settings.to_display()[canonical]
            new = db.settings.with_value(canonical, value)
            expired = db.preview_expiry(new) if canonical == "retention" else None
        after = new.to_display()[canonical]
        return SettingChange(name, canonical, before, after, True, expired)
    db = Database.open(writable_database_dir(data_dir, name), name, background=False)
    try:
        before = db.settings.to_display()[canonical]
        new = db.settings.with_value(canonical, value)
        expired = db.preview_expiry(new) if canonical == "retention" else None
        after = db.set_setting(canonical, value).to_display()[canonical]
    except BaseException:
        db.abandon()
        raise
    result = SettingChange(name, canonical, before, after, False, expired)
    try:
        db.close()
    except EngineError as exc:  # the change is committed (fsynced in the WAL) all the same
        result.warning = (
            f"the checkpoint at close failed ({exc.message}); the change is "
            "committed in the WAL and applies from the next open on"
        )
    return result


def checkpoint(data_dir: Path, names: list[str]) -> list[CheckpointReport]:
    reports = []
    for name in names:
        with writing(data_dir, name, background=False) as db:
            reports.append(db.checkpoint("command"))
    return reports


def each_database(
    names: list[str], operation: Callable[[str], Report]
) -> list[tuple[str, Report | EngineError]]:
    """``operation`` on every database named; one that is locked or fails is reported
    and skipped, never stops the others."""
    results: list[tuple[str, Report | EngineError]] = []
    for name in names:
        try:
            results.append((name, operation(name)))
        except EngineError as exc:
            results.append((name, exc))
    return results


def checkpoint_each(
    data_dir: Path, names: list[str]
) -> list[tuple[str, CheckpointReport | EngineError]]:
    """Checkpoint every database named (see :func:`each_database`)."""

    def one(name: str) -> CheckpointReport:
        with writing(data_dir, name, background=False) as db:
            return db.checkpoint("command")

    return each_database(names, one)


def compact_each(
    data_dir: Path, names: list[str]
) -> list[tuple[str, CompactionReport | EngineError]]:
    """Compact every database named (see :func:`each_database`)."""
    return each_database(names, lambda name: compact(data_dir, name))


def compact(data_dir: Path, name: str) -> CompactionReport:
    with writing(data_dir, name, background=False) as db:
        return db.compact()


def recover(data_dir: Path, name: str, *, dry_run: bool) -> RecoveryReport:
    """Run crash recovery now (or, with ``dry_run``, say what it would do)."""
    if dry_run:
        with reading(data_dir, name) as db:
            return db.recovery
    with writing(data_dir, name, background=False) as db:
        return db.recovery


def select(
    data_dir: Path,
    name: str,
    table: str,
    *,
    start: str | None = None,
    end: str | None = None,
    where: dict[str, str] | None = None,
    limit: int | None = None,
) -> pa.Table:
    """:func:`select_batches` as one table in memory."""
    validate_name("table", table)
    with reading(data_dir, name) as db:
        found = _selected(db, table, start, end, where, limit)
        return as_table(found, db.schema(table).arrow_schema(db.settings.precision))


def select_batches(
    data_dir: Path,
    name: str,
    table: str,
    *,
    start: str | None = None,
    end: str | None = None,
    where: dict[str, str] | None = None,
    limit: int | None = None,
) -> Iterator[pa.Table]:
    """Rows of a table after upserts, sorted by series then time, in batches of bounded
    size; the table, the bounds and the segments are checked before this returns.
    The scan runs a batch ahead on a thread of its own, while the caller renders."""
    validate_name("table", table)
    with reading(data_dir, name) as db:
        return ahead(_selected(db, table, start, end, where, limit), name="select-scan")


def _selected(
    db: Database,
    table: str,
    start: str | None,
    end: str | None,
    where: dict[str, str] | None,
    limit: int | None,
) -> Iterator[pa.Table]:
    precision = db.settings.precision
    return db.scan_batches(
        table,
        start=parse_time(start, precision) if start else None,
        end=parse_time(end, precision) if end else None,
        where=where,
        limit=limit,
    )


def settable_keys() -> tuple[str, ...]:
    return SETTABLE_KEYS


def wal_dir(data_dir: Path, name: str) -> Path:
    path = existing_database_dir(data_dir, name) / wal.WAL_DIR
    if not path.exists():
        raise NotFound(f"database {name} has no WAL directory")
    return path


def ingest(
    data_dir: Path,
    name: str,
    kind: str,
    path: str,
    options: IngestOptions,
    csv_options: CsvOptions | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Ingest ``path`` (``-`` for stdin) as ``lp`` or ``csv`` into database ``name``."""
    from engine.ingest import csvingest
    from engine.ingest import pipeline as ingest_mod
    from engine.ingest.inputs import open_source

    stream, _size, position = open_source(path)
    source = "stdin" if path == "-" else path
    if progress is not None and position is not None:
        shown, on_disk = progress, position

        def progress(_read: int, rows: int) -> None:  # bytes read on disk, not decompressed
            shown(on_disk(), rows)

    db = Database.open(writable_database_dir(data_dir, name), name)
    try:
        if kind == "lp":
            report = ingest_mod.ingest_lp(db, stream, source, options, progress)
        else:
            assert csv_options is not None, "a CSV ingest needs its CSV options"
            report = csvingest.ingest_csv(db, stream, source, csv_options, options, progress)
    except BaseException:
        db.abandon()
        raise
    try:
        db.close()
    except BaseException as exc:
        # every row is committed in the WAL; only the checkpoint at close failed
        if isinstance(exc, EngineError):
            exc.message = f"{exc.message} (in the checkpoint at close)"
            exc.hint = "the committed rows are safe in the WAL; the next open replays them"
        exc.committed_rows = report.rows  # type: ignore[attr-defined]
        raise
    report.replication = db.replication_notes()
    if report.rejected_reasons:  # what operators alert on (engine.db.health)
        health.record_rejected(db.dir, {r.reason: r.count for r in report.rejected_reasons})
    return report


def replica_change(data_dir: Path, name: str, url: str, *, add: bool) -> Settings:
    """Add or remove a replica store of a database (logged and fsynced)."""
    from engine.replication.primary import add_replica  # the one op that needs that layer

    with writing(data_dir, name, background=False) as db:
        return add_replica(db, url) if add else db.remove_replica(url)


def delete_rows(
    data_dir: Path,
    name: str,
    table: str,
    *,
    start: str,
    end: str,
    where: dict[str, str],
    dry_run: bool,
) -> DeleteReport:
    """Remove the rows of ``table`` with ``start <= ts < end`` whose tags equal ``where``
    (or, with ``dry_run``, count them): one logged DELETE, then a checkpoint that rewrites
    only the segments holding such rows. All or nothing across a crash."""
    validate_name("table", table)
    started = time.perf_counter()
    opener = reading if dry_run else writing
    with opener(data_dir, name) as db:
        precision = db.settings.precision
        unit = ns_per_unit(precision)
        low, high = parse_time(start, precision), parse_time(end, precision)
        if high <= low:
            raise InvalidArgument(
                f"the end ({end}) is not after the start ({start}): nothing to delete",
                hint="the range is start <= time < end",
                param="end",
            )
        matched = db.scan_batches(table, start=low, end=high, where=where, keys_only=True)
        rows, partitions = _rows_and_partitions(matched, db.settings.partition_units)
        report = DeleteReport(
            database=name,
            table=table,
            start=low * unit,
            end=high * unit,
            where=dict(where),
            rows=rows,
            partitions=[p * unit for p in partitions],
            dry_run=dry_run,
        )
        if not dry_run and rows:
            spec = DeleteSpec(table, low * unit, high * unit, tuple(sorted(where.items())))
            report.lsn = db.log_delete(spec).lsn
            IO.crash_point("delete.after_log")
            done = db.checkpoint("delete")
            report.segments_rewritten = done.segments_rewritten
            report.segments_dropped = done.segments_dropped
    report.seconds = time.perf_counter() - started
    return report


def _rows_and_partitions(batches: Iterable[pa.Table], width: int) -> tuple[int, list[int]]:
    """How many rows ``batches`` hold, and the partitions (their start, in timestamp
    units) those lie in: counted a batch at a time, never holding the rows."""
    rows, partitions = 0, set()
    for batch in batches:
        rows += batch.num_rows
        if batch.num_rows:
            starts = segment.partition_starts(batch.column("ts").cast(pa.int64()), width)
            partitions.update(pc.unique(starts).to_pylist())
    return rows, sorted(partitions)
