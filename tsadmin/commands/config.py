"""tsadmin config: get and set wal_level, wal_fsync_period, checkpoint_interval."""

from datetime import UTC, datetime
from typing import Annotated

import typer

from engine import ops
from engine.storage.retention import ExpiryPreview
from tsadmin.params import Db, complete_key
from tsadmin.render import emit
from tsadmin.state import command_group, note, state

app = command_group(
    "Read and change durability settings (KWDB keys ts.wal.* accepted too).",
    short_help="Read and change a database's settings.",
)


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
            autocompletion=complete_key,
        ),
    ],
    value: Annotated[str, typer.Argument(help="e.g. sync, 2, 500ms, 30s, 5m.", metavar="VALUE")],
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Say what the change would do (what a retention expires)."),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm a retention that removes data now.")
    ] = False,
) -> None:
    """Change a setting; logged and fsynced. Switching to or from off checkpoints first. A
    retention that would remove data now says what and asks for --yes."""
    st = state(ctx)
    if not dry_run and not yes:
        preview = ops.config_set(st.data_dir, db, key, value, dry_run=True)
        if preview.expired is not None and preview.expired.rows:
            raise typer.BadParameter(
                f"retention {preview.new} would remove {_expired(preview.expired)} now; "
                "check it with --dry-run, then add --yes",
                param_hint="--yes",
            )
    change = ops.config_set(st.data_dir, db, key, value, dry_run=dry_run)
    if change.warning:
        note(ctx, f"warning: {change.warning}")
    if st.format == "table":
        verb = "would change" if dry_run else "changed"
        note(ctx, f"{db}: {verb} {change.key} {change.old} -> {change.new}")
        if change.expired is not None and change.expired.rows:
            removed = "would remove" if dry_run else "removed"
            note(ctx, f"{db}: {removed} {_expired(change.expired)}")
    else:
        emit(change.to_json(), st.format)


def _expired(expired: ExpiryPreview) -> str:
    before = datetime.fromtimestamp((expired.cutoff_ns or 0) / 1e9, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    return (
        f"{expired.rows:,} rows (as stored) in {len(expired.partitions)} partition(s) of "
        f"{', '.join(expired.tables)}, everything before {before}"
    )
