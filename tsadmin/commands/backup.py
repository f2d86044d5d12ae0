"""tsadmin backup (create, list, verify, prune) and tsadmin restore."""

from datetime import UTC, datetime
from typing import Annotated

import typer

from engine import VerificationFailed
from engine.archive.backup import BackupOptions, create_backup, list_archives, prune, verify_archive
from engine.archive.restore import RestoreOptions, restore
from engine.replication.pitr import restore_to_point
from engine.settings import parse_duration_ns
from engine.timeparse import parse_time
from tsadmin.params import Db, DbAlias, OptionalDb, one_database
from tsadmin.progress import byte_progress
from tsadmin.render import emit
from tsadmin.state import command_group, note, state

app = command_group(
    "Back up databases or tables to Parquet archives; list, verify and prune them.",
    short_help="Back up to Parquet archives; list, verify, prune.",
)

Dir = Annotated[
    str,
    typer.Argument(
        help="Store holding archives: a directory, file:///dir or s3://bucket/prefix.",
        show_default=False,
        metavar="URL",
    ),
]
Archive = Annotated[
    str,
    typer.Argument(
        help="An archive: URL/NAME (its store's URL and its name).",
        show_default=False,
        metavar="ARCHIVE",
    ),
]


@app.command("create", short_help="Write a consistent archive of a database or tables.")
def create(
    ctx: typer.Context,
    db: Db,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Store to write the archive into: a directory, file:///dir or s3://bucket/prefix.",
            show_default=False,
            metavar="URL",
        ),
    ],
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Only this table (repeatable).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Archive name [default: DB-KIND-UTCTIME].")
    ] = None,
    incremental: Annotated[
        bool, typer.Option(help="Store only what changed since the base.")
    ] = False,
    base: Annotated[
        str | None, typer.Option(help="Base archive [default: the newest of DB in --to].")
    ] = None,
) -> None:
    """Write one consistent snapshot (committed data included) as an archive; no lock taken."""
    st = state(ctx)
    options = BackupOptions(
        to=to, tables=table, name=name, incremental=incremental or base is not None, base=base
    )
    with byte_progress(st.show_progress, None, f"backup {db}") as progress:
        report = create_backup(
            st.data_dir, db, options, (lambda done, total: progress(done, 0)) if progress else None
        )
    if st.format == "table":
        emit(report.to_json(), "table")
    else:
        emit(report.to_json(), st.format)


@app.command("list", short_help="The archives of a store.")
def list_(ctx: typer.Context, directory: Dir) -> None:
    """Archives in DIR: kind, database, tables, rows, size, LSN, time, base."""
    st = state(ctx)
    emit(
        list_archives(directory),
        st.format,
        columns=[
            "name",
            "kind",
            "database",
            "tables",
            "rows",
            "bytes",
            "snapshot_lsn",
            "created",
            "base",
        ],
    )


@app.command("verify", short_help="Check an archive and its base chain; exit 3 if damaged.")
def verify(ctx: typer.Context, archive: Archive) -> None:
    """Manifest, files, sizes, SHA-256, Parquet schemas and rows, base chain; exit 3 if damaged."""
    st = state(ctx)
    report = verify_archive(archive)
    if st.format == "table":
        emit({k: v for k, v in report.to_json().items() if k != "problems"}, "table")
        for problem in report.problems:
            typer.echo(f"problem: {problem}")
    else:
        emit(report.to_json(), st.format)
    if not report.ok:
        raise VerificationFailed(f"archive {archive} has {len(report.problems)} problem(s)")


@app.command("prune", short_help="Delete archives outside the retention policy.")
def prune_(
    ctx: typer.Context,
    directory: Dir,
    keep_last: Annotated[
        int,
        typer.Option(
            "--keep-last",
            help="Keep the newest N per database and kind (whole-database backups are "
            "counted apart from table backups).",
            show_default=False,
        ),
    ],
    keep_daily: Annotated[
        int, typer.Option("--keep-daily", help="And the newest of each of N days.")
    ] = 0,
    keep_weekly: Annotated[
        int, typer.Option("--keep-weekly", help="And the newest of each of N weeks.")
    ] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; delete nothing.")
    ] = False,
    grace: Annotated[
        str,
        typer.Option(
            "--grace",
            help="Remove what killed backups left (uploads no manifest commits) once older "
            "than this.",
        ),
    ] = "1d",
) -> None:
    """Delete archives outside the retention policy (never a base a kept archive needs) and
    what killed backups left behind."""
    st = state(ctx)
    report = prune(
        directory,
        keep_last=keep_last,
        keep_daily=keep_daily,
        keep_weekly=keep_weekly,
        dry_run=dry_run,
        grace_seconds=parse_duration_ns(grace, what="grace period") / 1e9,
    )
    if st.format == "table":
        for name in report.deleted:
            typer.echo(("would delete " if dry_run else "deleted ") + name)
        if dry_run:
            for name, why in report.reasons.items():
                typer.echo(f"would keep {name}: {'; '.join(why)}")
        note(
            ctx,
            f"kept {len(report.kept)} archive(s)"
            + (f", {len(report.kept_as_base)} only as bases" if report.kept_as_base else ""),
        )
    else:
        emit(report.to_json(), st.format)


def restore_command(
    ctx: typer.Context,
    archive: Annotated[
        str,
        typer.Argument(
            help="An archive (URL/NAME: its store's URL and its name); with "
            "--to-time or --to-lsn, a replica store.",
            show_default=False,
            metavar="URL",
        ),
    ],
    target: OptionalDb = None,
    db_alias: DbAlias = None,
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Only this table (repeatable).")
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="fail if the target exists, replace it, or merge (upsert).",
            metavar="fail|replace|merge",
        ),
    ] = "fail",
    yes: Annotated[bool, typer.Option("--yes", help="Confirm --mode replace.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Verify and say what would be restored; change nothing."),
    ] = False,
    to_time: Annotated[
        str | None,
        typer.Option(
            "--to-time",
            help="Point-in-time restore from a replica store (ARCHIVE is then its URL): "
            "the state at this commit time (ISO 8601, epoch with unit, now-1h).",
        ),
    ] = None,
    to_lsn: Annotated[
        int | None,
        typer.Option("--to-lsn", help="Point-in-time restore: the state at this LSN."),
    ] = None,
) -> None:
    """Restore an archive (following its base chain); verified first, swapped in atomically.
    DB is the target (default: the archive's database; a point-in-time restore needs it).
    --mode replace deletes the target's current data and needs --yes. With --to-time or
    --to-lsn, ARCHIVE is a replica store and the database is rebuilt from its newest
    snapshot before the target plus the shipped log up to it (a new database, DB)."""
    st = state(ctx)
    db = one_database(target, db_alias, required=False)
    if to_time is not None or to_lsn is not None:
        _restore_to_point(ctx, archive, db, to_time, to_lsn, dry_run)
        return
    if mode == "replace" and not yes and not dry_run:
        raise typer.BadParameter(
            "--mode replace deletes the target's current data: add --yes (or --dry-run first)",
            param_hint="--yes",
        )
    options = RestoreOptions(archive=archive, db=db, tables=table, mode=mode, dry_run=dry_run)
    report = restore(st.data_dir, options)
    for item in report.notes:
        note(ctx, f"note: {item}")
    emit(report.to_json(), st.format)


def _restore_to_point(
    ctx: typer.Context,
    url: str,
    db: str | None,
    to_time: str | None,
    to_lsn: int | None,
    dry_run: bool,
) -> None:
    st = state(ctx)
    if to_time is not None and to_lsn is not None:
        raise typer.BadParameter("give --to-time or --to-lsn, not both", param_hint="--to-time")
    if db is None:
        raise typer.BadParameter(
            "a point-in-time restore makes a new database: name it", param_hint="DB"
        )
    report = restore_to_point(
        st.data_dir,
        url,
        db,
        to_lsn=to_lsn,
        to_time_ns=parse_time(to_time, "ns") if to_time is not None else None,
        dry_run=dry_run,
    )
    reached = report.reached_commit_ns
    note(
        ctx,
        ("would restore" if dry_run else "restored")
        + f" {db} to LSN {report.reached_lsn}"
        + (
            f" (last commit {datetime.fromtimestamp(reached / 1e9, UTC).isoformat()})"
            if reached
            else ""
        ),
    )
    for item in report.notes:
        note(ctx, f"note: {item}")
    emit(report.to_json(), st.format)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="backup")
    root.command(
        "restore", short_help="Restore an archive, or a replica store to a point in time."
    )(restore_command)
