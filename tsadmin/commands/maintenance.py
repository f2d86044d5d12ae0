"""tsadmin checkpoint, compact, recover."""

from typing import Annotated, Any

import typer

from engine import list_databases, ops
from engine.errors import EngineError
from tsadmin.params import Db, OptionalDb
from tsadmin.render import emit
from tsadmin.state import note, state

EveryDatabase = Annotated[bool, typer.Option("--all", help="Every database of the data directory.")]


def checkpoint(
    ctx: typer.Context,
    db: OptionalDb = None,
    all_: EveryDatabase = False,
) -> None:
    """Write the memtable to segments now and drop the checkpointed WAL."""
    st = state(ctx)
    _one_or_all(db, all_)
    if not all_:
        reports = [r.to_json() for r in ops.checkpoint(st.data_dir, [db or ""])]
    else:
        results = ops.checkpoint_each(st.data_dir, list_databases(st.data_dir))
        reports = _each_as_rows(results)
    if st.format == "table":
        emit(
            reports,
            "table",
            columns=[
                *(["status"] if all_ else []),
                "database",
                "skipped",
                "lsn",
                "rows",
                "segments_written",
                "bytes_written",
                "wal_bytes_removed",
                "rows_expired",
                "partitions_expired",
                "seconds",
                *(["error"] if all_ else []),
            ],
        )
    else:
        emit(reports, st.format)
    if all_:
        _raise_failures(results, "checkpointed")


def _one_or_all(db: str | None, all_: bool) -> None:
    if (db is None) == (not all_):
        raise typer.BadParameter("name one database, or give --all")


def _each_as_rows(results: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"database": name, "status": "failed", "error": r.message}
        if isinstance(r, EngineError)
        else {**r.to_json(), "status": "ok"}
        for name, r in results
    ]


def _raise_failures(results: list[tuple[str, Any]], done: str) -> None:
    """After every database was tried: the first failure's kind, naming all of them."""
    failed = [(n, r) for n, r in results if isinstance(r, EngineError)]
    if failed:
        _, first = failed[0]
        raise type(first)(
            f"{len(failed)} of {len(results)} database(s) were not {done}: "
            + "; ".join(f"{n}: {r.message}" for n, r in failed),
            hint=first.hint,
        )


def compact(
    ctx: typer.Context,
    db: OptionalDb = None,
    all_: EveryDatabase = False,
) -> None:
    """Merge the segments of each partition into one."""
    st = state(ctx)
    _one_or_all(db, all_)
    if not all_:
        emit(ops.compact(st.data_dir, db or "").to_json(), st.format)
        return
    results = ops.compact_each(st.data_dir, list_databases(st.data_dir))
    emit(_each_as_rows(results), st.format)
    _raise_failures(results, "compacted")


def recover(
    ctx: typer.Context,
    db: Db,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what recovery would do; change nothing.")
    ] = False,
) -> None:
    """Replay the WAL after a crash (also done by any writer on open) and report."""
    st = state(ctx)
    report = ops.recover(st.data_dir, db, dry_run=dry_run).to_json()
    report["dry_run"] = dry_run
    emit(report, st.format)
    if st.format == "table" and not report["needed"]:
        note(ctx, f"{db} was closed cleanly: nothing to recover")


def register(app: typer.Typer) -> None:
    app.command("checkpoint", short_help="Write the memtable to segments now.")(checkpoint)
    app.command("compact", short_help="Merge each partition's segments into one.")(compact)
    app.command("recover", short_help="Replay the WAL after a crash and report.")(recover)
