"""tsadmin config: get and set wal_level, wal_fsync_period, checkpoint_interval."""

from __future__ import annotations

from typing import Annotated

import typer

from engine import ops
from tsadmin.render import emit
from tsadmin.state import command_group, note, state

app = command_group("Read and change durability settings (KWDB keys ts.wal.* accepted too).")
Db = Annotated[str, typer.Argument(help="Database name.", show_default=False, metavar="DB")]


@app.command("get")
def get(
    ctx: typer.Context,
    db: Db,
    key: Annotated[
        str | None, typer.Argument(help="One setting; all if omitted.", metavar="[KEY]")
    ] = None,
) -> None:
    """Show settings."""
    st = state(ctx)
    values = ops.config_get(st.data_dir, db, key)
    if st.format == "table" and key is not None:
        typer.echo(next(iter(values.values())))
    elif st.format == "table":
        emit([{"key": k, "value": v} for k, v in values.items()], "table")
    else:
        emit(values, st.format)


@app.command("set")
def set_(
    ctx: typer.Context,
    db: Db,
    key: Annotated[
        str,
        typer.Argument(
            help="wal_level, wal_fsync_period, checkpoint_interval, max_line_bytes, "
            "max_tags_per_series, max_fields_per_table.",
            metavar="KEY",
        ),
    ],
    value: Annotated[str, typer.Argument(help="e.g. sync, 2, 500ms, 30s, 5m.", metavar="VALUE")],
) -> None:
    """Change a setting; logged and fsynced. Switching to or from off checkpoints first."""
    st = state(ctx)
    change = ops.config_set(st.data_dir, db, key, value)
    if change["warning"]:
        note(ctx, f"warning: {change['warning']}")
    if st.format == "table":
        note(ctx, f"{db}: {change['key']} {change['old']} -> {change['new']}")
    else:
        emit(change, st.format)
