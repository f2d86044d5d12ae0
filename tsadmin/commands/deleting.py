"""tsadmin delete: remove rows by table, time range and tags."""

from datetime import UTC, datetime
from typing import Annotated

import typer

from engine import ops
from engine.storage.deletes import DeleteReport, check_where
from tsadmin.params import Db, Table
from tsadmin.render import emit
from tsadmin.state import note, state


def delete(
    ctx: typer.Context,
    db: Db,
    table: Table,
    start: Annotated[
        str,
        typer.Option(
            help="From this time (inclusive): ISO 8601, epoch, now-30d.", show_default=False
        ),
    ],
    end: Annotated[str, typer.Option(help="Before this time (exclusive).", show_default=False)],
    where: Annotated[
        list[str] | None, typer.Option(help="tag=value (repeatable; all must match).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be removed; change nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion.")] = False,
) -> None:
    """Remove the rows of a table in a time range (and matching tags): logged, crash-safe,
    shipped to replicas; rewrites only the partitions holding such rows."""
    st = state(ctx)
    conditions = check_where(where or [])
    counting = dry_run or not yes
    report = ops.delete_rows(
        st.data_dir, db, table, start=start, end=end, where=conditions, dry_run=counting
    )
    if not dry_run and not yes and report.rows:
        raise typer.BadParameter(
            f"this would remove {_what(report)}; check it with --dry-run, then add --yes",
            param_hint="--yes",
        )
    if st.format != "table":
        emit(report.to_json(), st.format)
        return
    verb = "would remove" if report.dry_run else "removed"
    note(ctx, f"{db}: {verb} {_what(report)}")


def _what(report: DeleteReport) -> str:
    parts = len(report.partitions)
    where = "".join(f" {k}={v}" for k, v in report.where.items())
    return (
        f"{report.rows:,} rows of {report.table} in {parts} partition(s) "
        f"from {_iso(report.start)} to {_iso(report.end)}{where and ' where' + where}"
    )


def _iso(ns: int | None) -> str:
    if ns is None:
        return "the start"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def register(app: typer.Typer) -> None:
    app.command("delete", short_help="Remove the rows of a table in a time range.")(delete)
