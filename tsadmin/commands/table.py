"""tsadmin table: list, show, drop."""

from typing import Annotated

import typer

from engine import ops
from tsadmin.params import Db, Table
from tsadmin.render import emit, emit_sections
from tsadmin.state import command_group, note, state

app = command_group("Inspect and drop tables.")


@app.command("list")
def list_(ctx: typer.Context, db: Db) -> None:
    """The tables of a database."""
    st = state(ctx)
    emit(
        [t.to_json() for t in ops.table_summaries(st.data_dir, db)],
        st.format,
        columns=["table", "tags", "fields", "segments", "rows_stored"],
    )


@app.command("show")
def show(ctx: typer.Context, db: Db, table: Table) -> None:
    """Columns, rows, series, time range and storage of a table."""
    st = state(ctx)
    details = ops.table_details(st.data_dir, db, table).to_json()
    if st.format == "json":
        emit(details, "json")
        return
    summary = {k: v for k, v in details.items() if k != "columns"}
    emit_sections([details["columns"], summary], st.format)


@app.command("drop")
def drop(
    ctx: typer.Context,
    db: Db,
    table: Table,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm the deletion.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; change nothing.")
    ] = False,
) -> None:
    """Delete a table and its data (needs --yes)."""
    st = state(ctx)
    if dry_run:
        details = ops.table_details(st.data_dir, db, table).to_json()
        would = {k: details[k] for k in ("database", "table", "rows", "segments", "segment_bytes")}
        emit({"dry_run": True, "would_drop": would}, st.format)
        return
    if not yes:
        raise typer.BadParameter(
            f"dropping {table} deletes its data; add --yes", param_hint="--yes"
        )
    report = ops.drop_table(st.data_dir, db, table)
    if st.format == "json":
        emit({"dropped": table, "checkpoint": report.to_json()}, "json")
    else:
        note(ctx, f"dropped table {table} of {db}")
