"""tsadmin replica (add, remove, status), replicate, follow, promote."""

from typing import Annotated, Any

import typer

from engine import ops
from engine.replication.primary import replicate as run_shipper
from engine.replication.promote import promote as run_promote
from engine.replication.standby import follow as run_follower
from engine.replication.status import replica_status
from engine.settings import parse_duration_ns
from tsadmin import signals
from tsadmin.params import Db, DbAlias, OptionalDb, complete_database, one_database
from tsadmin.render import emit
from tsadmin.state import command_group, note, state

app = command_group("Replica stores of a primary: add, remove, and their status.")

Url = Annotated[
    str,
    typer.Argument(
        help="Replica store: a directory, file:///dir or s3://bucket/prefix (one per database).",
        show_default=False,
        metavar="URL",
    ),
]
Interval = Annotated[str, typer.Option("--interval", help="Time between rounds.")]


@app.command("add", short_help="Ship a database's log to a store from now on.")
def add(ctx: typer.Context, db: Db, url: Url) -> None:
    """Ship DB's log to the store URL from now on (logged and fsynced; the first round
    uploads a snapshot)."""
    st = state(ctx)
    settings = ops.replica_change(st.data_dir, db, url, add=True)
    emit({"database": db, "replicas": list(settings.replicas)}, st.format)


@app.command("remove", short_help="Stop shipping a database to a store.")
def remove(ctx: typer.Context, db: Db, url: Url) -> None:
    """Stop shipping DB to the store URL (what it holds stays there)."""
    st = state(ctx)
    settings = ops.replica_change(st.data_dir, db, url, add=False)
    emit(
        {
            "database": db,
            "replicas": list(settings.replicas),
            "wal_level": settings.wal_level.label,
        },
        st.format,
    )


@app.command("status", short_help="Replication lag and state, of a primary or a standby.")
def status(ctx: typer.Context, db: Db) -> None:
    """Per replica store: shipped LSN, lag (records, rows, bytes, seconds), held WAL,
    state (ok, lagging, needs reseed, fenced), the store's size, snapshot count and oldest
    restorable time; on a standby, its applied LSN, lag and state (ok, lagging, needs
    rebuild, stopped, promoting) with the error that stopped it."""
    st = state(ctx)
    report = replica_status(st.data_dir, db)
    if st.format != "table":
        emit(report, st.format)
        return
    if report["role"] == "standby":
        emit(report, "table")
        return
    note(
        ctx,
        f"{db}: primary, epoch {report['epoch']}, wal_level {report['wal_level']}, "
        f"committed LSN {report['committed_lsn']}",
    )
    emit(
        report["replicas"],
        "table",
        columns=[
            "url",
            "state",
            "shipped_lsn",
            "lag_records",
            "lag_rows",
            "lag_bytes",
            "lag_seconds",
            "held_wal_bytes",
            "snapshots",
            "store_bytes",
            "oldest_restorable",
            "error",
        ],
    )


def _seconds(text: str, what: str) -> float:
    return parse_duration_ns(text, what=what) / 1e9


def replicate(
    ctx: typer.Context,
    db: Db,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit (cron).")] = False,
    interval: Interval = "1s",
    snapshot: Annotated[
        bool, typer.Option("--snapshot", help="Also upload a fresh snapshot to every store.")
    ] = False,
) -> None:
    """Ship DB's committed log to its replica stores, alone (no writer needed): a service
    until SIGTERM, or --once. Writers ship on their own; one shipper at a time."""
    st = state(ctx)

    def warn(url: str, message: str) -> None:
        note(ctx, f"warning: {url}: {message}")

    with signals.until_signalled() as stop:
        reports = run_shipper(
            st.data_dir,
            db,
            once=once,
            interval=_seconds(interval, "interval"),
            snapshot=snapshot,
            should_stop=stop.is_set,
            on_error=warn,
            on_note=lambda item: note(ctx, f"note: {item}"),
        )
    if not reports:
        note(ctx, f"{db} is shipped by its writer now; nothing to do")
    rows: list[dict[str, Any]] = [r.to_json() for r in reports.values()]
    emit(rows, st.format)


def follow(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Argument(
            help="The replica store a primary ships to.", show_default=False, metavar="URL"
        ),
    ],
    target: OptionalDb = None,
    db_alias: DbAlias = None,
    once: Annotated[bool, typer.Option("--once", help="Catch up, then exit.")] = False,
    interval: Interval = "1s",
) -> None:
    """Keep DB a standby of the primary shipping to URL (made if missing): built from the
    newest snapshot, then every segment applied as it appears (a service until SIGTERM,
    or --once). Readable by every read-only command meanwhile; writes refused until
    promoted."""
    st = state(ctx)
    db = one_database(target, db_alias, required=True)
    assert db is not None

    def warn(error: Exception) -> None:
        note(ctx, f"warning: {error}")

    def tell(item: str) -> None:
        note(ctx, f"note: {item}")

    with signals.until_signalled() as stop:
        report = run_follower(
            st.data_dir,
            url,
            db,
            once=once,
            interval=_seconds(interval, "interval"),
            should_stop=stop.is_set,
            on_error=warn,
            on_note=tell,
        )
    emit(report.to_json(), st.format)


def promote(
    ctx: typer.Context,
    db: Annotated[
        str,
        typer.Argument(
            help="The standby.",
            show_default=False,
            metavar="DB",
            autocompletion=complete_database,
        ),
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote even when the standby cannot reach what the store holds (a damaged "
            "or missing segment): the report says which LSNs are given up.",
        ),
    ] = False,
) -> None:
    """Make a standby the primary: stop its follower, apply what the store holds (refused
    while it cannot reach all of it), fence the old primary, claim the next epoch (one of
    two contenders wins), ship to the same store from now on."""
    st = state(ctx)
    report = run_promote(st.data_dir, db, force=force)
    for item in report.notes:
        note(ctx, f"note: {item}")
    note(ctx, f"{db} is the primary now (epoch {report.epoch}, from LSN {report.branch_lsn + 1})")
    emit(report.to_json(), st.format)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="replica")
    root.command("replicate", short_help="Run the shipper alone (a service, or --once).")(replicate)
    root.command("follow", short_help="Keep a standby of a replica store in sync.")(follow)
    root.command("promote", short_help="Make a standby the primary.")(promote)
