"""tsadmin db: create, list, show, stats, drop, checksum, verify, salvage."""

from typing import Annotated

import typer

from engine import (
    Settings,
    VerificationFailed,
    create_database,
    drop_database,
    existing_database_dir,
    ops,
    writable_database_dir,
)
from engine.db import dbverify
from tsadmin.params import Db
from tsadmin.render import emit
from tsadmin.state import command_group, note, state

app = command_group("Create, inspect, compare and drop databases.")

Name = Db


@app.command("create")
def create(
    ctx: typer.Context,
    name: Name,
    precision: Annotated[
        str, typer.Option(help="Timestamp precision: ms, us or ns.", metavar="ms|us|ns")
    ] = "ns",
    wal_level: Annotated[
        str, typer.Option("--wal-level", help="off|sync|flush (or 0|1|2).")
    ] = "sync",
    wal_fsync_period: Annotated[
        str, typer.Option("--wal-fsync-period", help="flush level: fsync every N ms.")
    ] = "1000",
    checkpoint_interval: Annotated[
        str, typer.Option("--checkpoint-interval", help="e.g. 30s, 1m, 5m.")
    ] = "1m",
    partition: Annotated[str, typer.Option(help="Time width of a data partition.")] = "1d",
    retention: Annotated[
        str,
        typer.Option(help="Keep data this long (30d, 12w), expired a partition at a time."),
    ] = "none",
) -> None:
    """Create a database."""
    st = state(ctx)
    settings = Settings.build(
        precision=precision,
        wal_level=wal_level,
        wal_fsync_period=wal_fsync_period,
        checkpoint_interval=checkpoint_interval,
        partition=partition,
        retention=retention,
    )
    path = create_database(st.data_dir, name, settings)
    if st.format == "json":
        emit({"name": name, "path": str(path), "settings": settings.to_json()}, "json")
    else:
        note(ctx, f"created database {name} at {path}")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List the databases of the data directory."""
    st = state(ctx)
    summaries = ops.list_summaries(st.data_dir)
    columns = ["name", "tables", "wal_level", "precision", "last_lsn", "writer_pid"]
    if any(s.error is not None for s in summaries):
        columns.append("error")  # a damaged database is flagged, the others still listed
    emit([s.to_json() for s in summaries], st.format, columns=columns)


@app.command("show")
def show(ctx: typer.Context, name: Name) -> None:
    """Settings, tables, LSNs, WAL files and writer of a database."""
    st = state(ctx)
    emit(ops.database_summary(st.data_dir, name).to_json(), st.format)


@app.command("stats")
def stats(ctx: typer.Context, name: Name) -> None:
    """Storage figures per table (segments, partitions, bytes, rows)."""
    st = state(ctx)
    result = ops.database_stats(st.data_dir, name).to_json()
    if st.format == "table":
        emit(result["tables"], "table")
        note(
            ctx,
            f"WAL {result['wal_bytes']} bytes; checkpoint LSN {result['checkpoint_lsn']}, "
            f"last LSN {result['last_lsn']}",
        )
    else:
        emit(result if st.format == "json" else result["tables"], st.format)


@app.command("drop")
def drop(
    ctx: typer.Context,
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; change nothing.")
    ] = False,
) -> None:
    """Delete a database and all its data (needs --yes)."""
    st = state(ctx)
    if dry_run:
        stats = ops.database_stats(st.data_dir, name)
        would = {
            "database": name,
            "tables": len(stats.tables),
            "rows": stats.segment_rows + stats.wal_rows,
            "bytes": stats.segment_bytes + stats.wal_bytes,
        }
        emit({"dry_run": True, "would_drop": would}, st.format)
        return
    if not yes:
        raise typer.BadParameter(
            f"dropping {name} deletes all its data; add --yes", param_hint="--yes"
        )
    drop_database(st.data_dir, name)
    if st.format == "json":
        emit({"dropped": name}, "json")
    else:
        note(ctx, f"dropped database {name}")


@app.command("checksum", short_help="Order-independent SHA-256 of the rows.")
def checksum(
    ctx: typer.Context,
    name: Name,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Only this table (repeatable).")
    ] = None,
) -> None:
    """Order-independent SHA-256 of the rows (after upserts), to compare two copies."""
    st = state(ctx)
    result = ops.database_checksum(st.data_dir, name, table).to_json()
    if st.format == "table":
        emit(result["tables"], "table")
        what = f"database {name}" if not table else f"table(s) {', '.join(table)} of {name}"
        typer.echo(f"{what}: sha256 {result['sha256']} ({result['rows']} rows)")
    else:
        emit(result if st.format == "json" else result["tables"], st.format)


@app.command("verify", short_help="Check manifest, segments and WAL; exit 3 on damage.")
def verify(ctx: typer.Context, name: Name) -> None:
    """Check the manifest, every segment (digest, page CRCs, rows, time range) and the WAL;
    exit 3 if anything is wrong. Safe beside a writer."""
    st = state(ctx)
    report = dbverify.verify_database(existing_database_dir(st.data_dir, name), name)
    if st.format == "table":
        summary = {k: v for k, v in report.to_json().items() if k not in ("problems", "notes")}
        emit(summary, "table")
        for item in report.notes:
            note(ctx, f"note: {item['file']}: {item['note']}")
        if report.problems:
            typer.echo("")
            emit(report.problems, "table", columns=["file", "problem"])
    else:
        emit(report.to_json() if st.format == "json" else report.problems, st.format)
    if not report.ok:
        raise VerificationFailed(
            f"database {name} has {len(report.problems)} problem(s)",
            hint="a damaged segment: restore its table from the newest good archive "
            "(examples/runbooks/damaged-segment.md); a damaged WAL: "
            f"'tsadmin wal repair {name} --dry-run'",
        )


@app.command("salvage", short_help="Drop the segments db verify finds damaged.")
def salvage(
    ctx: typer.Context,
    name: Name,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be dropped; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm (it loses those rows).")] = False,
) -> None:
    """Drop the segments 'db verify' finds damaged, counting the rows lost (prefer restoring
    the table from an archive). Needs --yes unless --dry-run."""
    st = state(ctx)
    if not dry_run and not yes:
        plan = dbverify.salvage(existing_database_dir(st.data_dir, name), name, dry_run=True)
        _show_salvage(ctx, plan)
        if not plan.segments:
            return
        raise typer.BadParameter(
            "dropping damaged segments loses their rows: check the plan above, then add --yes",
            param_hint="--yes",
        )
    db_dir = (existing_database_dir if dry_run else writable_database_dir)(st.data_dir, name)
    _show_salvage(ctx, dbverify.salvage(db_dir, name, dry_run=dry_run))


def _show_salvage(ctx: typer.Context, report: dbverify.SalvageReport) -> None:
    st = state(ctx)
    if st.format != "table":
        emit(report.to_json() if st.format == "json" else report.segments, st.format)
        return
    if report.segments:
        emit(report.segments, "table", columns=["file", "table", "partition", "rows"])
    verb = "would drop" if report.dry_run else "dropped"
    note(
        ctx,
        f"{report.database}: {verb} {len(report.segments)} damaged segment(s) in "
        f"{report.partitions} partition(s), up to {report.rows_lost:,} rows",
    )
