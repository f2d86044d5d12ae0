"""tsadmin metrics: what operators alert on, printed or written for node_exporter."""

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from engine import ops
from engine.db import health, healthmetrics
from engine.errors import InvalidArgument
from tsadmin.render import emit
from tsadmin.state import note, state


def metrics(
    ctx: typer.Context,
    databases: Annotated[
        list[str] | None,
        typer.Argument(help="Databases (default: every one).", show_default=False, metavar="DB..."),
    ] = None,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            help="Write DIR/tsadmin.prom for node_exporter's textfile collector.",
            metavar="DIR",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Replication lag, WAL bytes, checkpoint and backup age per database.

    The figures serve's /metrics gives, for hosts that run tsadmin only from cron: with
    --textfile, written atomically as DIR/tsadmin.prom (the format node_exporter's
    --collector.textfile.directory reads). Without it, printed."""
    st = state(ctx)
    healths = ops.database_healths(st.data_dir, databases or None)
    if textfile is not None:
        if not textfile.is_dir():
            raise InvalidArgument(
                f"textfile directory {textfile} does not exist",
                hint="name node_exporter's --collector.textfile.directory",
            )
        path = healthmetrics.write_textfile(textfile, healths)
        note(ctx, f"wrote {path} ({len(healths)} database(s))")
        return
    now = time.time()
    if st.format == "json":
        emit([h.to_json(now) for h in healths], "json")
    else:
        emit([_summary(h, now) for h in healths], st.format)


def _summary(h: health.DatabaseHealth, now: float) -> dict[str, Any]:
    """One line per database: the worst replica, the newest backup."""
    newest = max((b.at for b in h.backups), default=None)
    return {
        "database": h.database,
        "wal_bytes": h.wal_bytes,
        "checkpoint_age_s": round(now - h.last_checkpoint_at, 3),
        "replicas": len(h.replicas),
        "max_lag_s": max((r.lag_seconds for r in h.replicas), default=None),
        "max_behind_records": max((r.behind_records for r in h.replicas), default=None),
        "backup_age_s": round(now - newest, 3) if newest is not None else None,
    }


def register(app: typer.Typer) -> None:
    app.command("metrics", short_help="Replication lag, WAL, checkpoint and backup age.")(metrics)
