"""tsadmin select: rows of a table after upserts."""

from __future__ import annotations

import sys
from typing import Annotated

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import typer

from engine import InvalidArgument, ops
from engine.rows import to_records
from tsadmin.render import emit
from tsadmin.state import state


def _where(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"invalid --where {pair!r}", hint="use --where tag=value")
        out[key] = value
    return out


def select(
    ctx: typer.Context,
    db: Annotated[str, typer.Argument(help="Database name.", show_default=False, metavar="DB")],
    table: Annotated[str, typer.Argument(help="Table name.", show_default=False, metavar="TABLE")],
    start: Annotated[
        str | None, typer.Option(help="From this time (inclusive): ISO 8601, epoch, now-1h.")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Before this time (exclusive).")] = None,
    where: Annotated[
        list[str] | None, typer.Option(help="tag=value (repeatable; all must match).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most N rows.", min=0)] = None,
    epoch: Annotated[
        bool, typer.Option("--epoch", help="Print ts as an integer, not ISO 8601.")
    ] = False,
) -> None:
    """Rows of a table (after upserts), sorted by series then time."""
    st = state(ctx)
    rows = ops.select(
        st.data_dir, db, table, start=start, end=end, where=_where(where or []), limit=limit
    )
    if st.format == "csv":
        pacsv.write_csv(_with_text_time(rows, epoch), sys.stdout.buffer)
        return
    emit(to_records(rows, iso_time=not epoch), st.format, columns=rows.column_names)


def _with_text_time(rows: pa.Table, epoch: bool) -> pa.Table:
    ts = rows.column("ts")
    shown = ts.cast(pa.int64()) if epoch else pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ")
    return rows.set_column(0, "ts", shown)


def register(app: typer.Typer) -> None:
    app.command("select")(select)
