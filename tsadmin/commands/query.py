"""tsadmin select: rows of a table after upserts."""

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Annotated

import typer

from engine import ops
from engine.arrowmods import pa, pacsv
from engine.storage.deletes import check_where
from engine.storage.rows import iso_texts, to_records
from tsadmin.params import Db, Table
from tsadmin.render import cell_text, strict
from tsadmin.state import state


def select(
    ctx: typer.Context,
    db: Db,
    table: Table,
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
    """Rows of a table (after upserts), sorted by series then time.

    Rows stream out in batches: memory does not grow with the table. A read of more
    than 16 segments first merges them 16 at a time into run files in
    $TMPDIR/tsadmin-UID/, removed when the command ends.
    """
    st = state(ctx)
    batches = ops.select_batches(
        st.data_dir, db, table, start=start, end=end, where=check_where(where or []), limit=limit
    )
    stream_rows(batches, st.format, epoch=epoch)


# Rows are rendered this many at a time, so memory does not grow with the result.
CHUNK_ROWS = 5_000


def stream_rows(batches: Iterable[pa.Table], fmt: str, *, epoch: bool) -> None:
    """Print the rows of ``batches`` chunk by chunk, holding one batch at a time: CSV
    with a header, a JSON array, one JSON object per line (jsonl), or a table whose
    column widths come from the first chunk (wider values later push their line out)."""
    widths: list[int] = []
    first = True
    if fmt == "json":
        sys.stdout.write("[")
    for chunk in _chunks(batches):
        if fmt == "csv":
            sink = pa.BufferOutputStream()
            options = pacsv.WriteOptions(include_header=first)
            pacsv.write_csv(_with_text_time(chunk, epoch), sink, write_options=options)
            sys.stdout.write(sink.getvalue().to_pybytes().decode())
        elif fmt in ("json", "jsonl"):
            records = strict(to_records(chunk, iso_time=not epoch))
            for i, record in enumerate(records):
                if fmt == "jsonl":
                    sep = "" if first and i == 0 else "\n"
                else:
                    sep = "\n  " if first and i == 0 else ",\n  "
                sys.stdout.write(sep + json.dumps(record, allow_nan=False, default=str))
        else:
            widths = _table_chunk(chunk, epoch, widths)
        first = first and not chunk.num_rows
    if fmt == "json":
        sys.stdout.write("]\n" if first else "\n]\n")
    elif fmt == "jsonl" and not first:
        sys.stdout.write("\n")


def _chunks(batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """The rows of ``batches`` in chunks of at most CHUNK_ROWS; with no rows at all, one
    empty chunk (which carries the columns: a CSV still gets its header)."""
    empty = None
    for batch in batches:
        if not batch.num_rows:
            empty = batch
        for offset in range(0, batch.num_rows, CHUNK_ROWS):
            empty = None
            yield batch.slice(offset, CHUNK_ROWS)
    if empty is not None:
        yield empty


def _table_chunk(chunk: pa.Table, epoch: bool, widths: list[int]) -> list[int]:
    names = chunk.column_names
    cells = [[cell_text(v) for v in r.values()] for r in to_records(chunk, iso_time=not epoch)]
    if not widths:
        if not cells:
            print("(none)")
            return [0]
        widths = [max([len(n), *(len(row[i]) for row in cells)]) for i, n in enumerate(names)]
        print("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip())
        print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return widths


def _with_text_time(rows: pa.Table, epoch: bool) -> pa.Table:
    ts = rows.column("ts")
    shown = ts.cast(pa.int64()) if epoch else iso_texts(ts)
    return rows.set_column(0, "ts", shown)


def register(app: typer.Typer) -> None:
    app.command("select")(select)
