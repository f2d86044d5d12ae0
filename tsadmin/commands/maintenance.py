"""tsadmin checkpoint, compact, recover."""

from __future__ import annotations

from typing import Annotated

import typer

from engine import CheckpointReport, list_databases, ops
from tsadmin.params import Db
from tsadmin.render import emit
from tsadmin.state import note, state


def checkpoint(
    ctx: typer.Context,
    db: Annotated[
        str | None, typer.Argument(help="Database name.", show_default=False, metavar="DB")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every database of the data directory.")
    ] = False,
) -> None:
    """Write the memtable to segments now and drop the checkpointed WAL."""
    st = state(ctx)
    if (db is None) == (not all_):
        raise typer.BadParameter("name one database, or give --all")
    if not all_:
        reports = [r.to_json() for r in ops.checkpoint(st.data_dir, [db or ""])]
    else:
        results = ops.checkpoint_each(st.data_dir, list_databases(st.data_dir))
        reports = [
            {**r.to_json(), "status": "ok"}
            if isinstance(r, CheckpointReport)
            else {"database": name, "status": "failed", "error": r.message}
            for name, r in results
        ]
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
        failed = [(n, r) for n, r in results if not isinstance(r, CheckpointReport)]
        if failed:
            _, first = failed[0]
            raise type(first)(
                f"{len(failed)} of {len(results)} database(s) were not checkpointed: "
                + "; ".join(f"{n}: {r.message}" for n, r in failed),
                hint=first.hint,
            )


def compact(ctx: typer.Context, db: Db) -> None:
    """Merge the segments of each partition into one."""
    st = state(ctx)
    report = ops.compact(st.data_dir, db).to_json()
    emit(report, st.format)


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
    app.command("compact")(compact)
    app.command("recover", short_help="Replay the WAL after a crash and report.")(recover)
