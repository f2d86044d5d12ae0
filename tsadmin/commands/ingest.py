"""tsadmin ingest: line protocol and CSV from files or stdin."""

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from engine import ops
from engine.ingest.csvoptions import CsvOptions
from engine.ingest.pipeline import IngestOptions
from engine.settings import parse_duration_ns
from tsadmin.errors import Exit
from tsadmin.params import Db
from tsadmin.progress import byte_progress
from tsadmin.render import emit
from tsadmin.state import command_group, note, state

app = command_group(
    "Load line protocol or CSV (files, .gz, .zst, or - for stdin).",
    short_help="Load line protocol or CSV.",
)

Source = Annotated[
    str,
    typer.Argument(
        help="Input file, or - for standard input.", show_default=False, metavar="FILE|-"
    ),
]
OnError = Annotated[
    str,
    typer.Option("--on-error", help="abort (default) or skip bad lines.", metavar="abort|skip"),
]
Rejects = Annotated[Path | None, typer.Option("--rejects", help="With skip: write bad lines here.")]
BatchRows = Annotated[int, typer.Option("--batch-rows", help="Rows per transaction.")]
FlushInterval = Annotated[
    str,
    typer.Option(
        "--flush-interval",
        help="Commit what has arrived at least this often: 1s, 500ms (a bare number: seconds).",
    ),
]


def _run(
    ctx: typer.Context,
    db: str,
    kind: str,
    source: str,
    options: IngestOptions,
    csv_options: CsvOptions | None = None,
) -> None:
    st = state(ctx)
    size = os.path.getsize(source) if source != "-" and os.path.isfile(source) else None
    with byte_progress(st.show_progress, size, f"ingest {kind}") as progress:
        report = ops.ingest(st.data_dir, db, kind, source, options, csv_options, progress)
    if st.format == "table":
        note(ctx, _summary(report, db))
        for item in report.rejected_reasons:  # why, even without a rejects file
            first = item.first_where
            if item.first_reason != item.reason:
                first += f": {item.first_reason}"
            note(ctx, f"  {item.count:,} rejected: {item.reason} (first: {first})")
    else:
        emit(report.to_json(), st.format)
    for warning in report.replication:
        note(ctx, f"warning: {warning}")
    if report.rejected:
        raise typer.Exit(Exit.PARTIAL)  # cron can tell a partial load from a clean one


def _seconds(text: str) -> float:
    return parse_duration_ns(text, what="flush interval") / 1e9


def _summary(report: Any, db: str) -> str:
    """``ingested 10,000 rows (5,000 new, 5,000 overwrote existing points) into ...``."""
    tables = ", ".join(report.tables) or "no table"
    if len(tables) > 200:
        tables = f"{len(report.tables):,} tables"
    split = (
        f" ({report.new:,} new, {report.overwritten:,} overwrote existing points)"
        if report.overwritten
        else ""
    )
    rejected = f"; {report.rejected:,} rejected (exit code 7)" if report.rejected else ""
    return (
        f"ingested {report.rows:,} rows{split} into {tables} of {db} in "
        f"{report.seconds:.2f}s ({report.rows_per_second:,.0f} rows/s){rejected}"
    )


@app.command("lp")
def lp(
    ctx: typer.Context,
    db: Db,
    source: Source,
    precision: Annotated[
        str,
        typer.Option(
            help="Timestamps in the input: ns, us, ms, s, m or h.", metavar="ns|us|ms|s|m|h"
        ),
    ] = "ns",
    on_error: OnError = "abort",
    rejects: Rejects = None,
    batch_rows: BatchRows = 5000,
    flush_interval: FlushInterval = "1s",
) -> None:
    """Ingest InfluxDB line protocol."""
    options = IngestOptions(
        batch_rows=batch_rows,
        on_error=on_error,
        rejects=rejects,
        precision=precision,
        flush_interval=_seconds(flush_interval),
    )
    _run(ctx, db, "lp", source, options)


@app.command("csv")
def csv(
    ctx: typer.Context,
    db: Db,
    source: Source,
    table: Annotated[
        str | None, typer.Option("--table", help="Target table [default: file name].")
    ] = None,
    ts_column: Annotated[
        str,
        typer.Option(
            "--ts-column",
            help="Timestamp column [default: the first of ts, time, _time, timestamp].",
        ),
    ] = "",
    ts_format: Annotated[
        str, typer.Option("--ts-format", help="auto, s, ms, us, ns, or a strptime format.")
    ] = "auto",
    tags: Annotated[str, typer.Option("--tags", help="Comma-separated tag columns.")] = "",
    table_column: Annotated[
        str | None, typer.Option("--table-column", help="Take each row's table from this column.")
    ] = None,
    schema: Annotated[
        str, typer.Option("--schema", help="Field types instead of inferred: a:float64,b:int64,...")
    ] = "",
    delimiter: Annotated[
        str,
        typer.Option(
            "--delimiter",
            help="Column separator: , ; | or tab [default: the one the header line holds most "
            "of, else ,].",
            show_default=False,
        ),
    ] = "",
    tz: Annotated[
        str, typer.Option("--tz", help="Time zone of timestamps written without one.")
    ] = "UTC",
    on_error: OnError = "abort",
    rejects: Rejects = None,
    batch_rows: BatchRows = 5000,
    flush_interval: FlushInterval = "1s",
) -> None:
    """Ingest CSV with a header row. With --ts-format auto, epoch integers are read in the
    unit their magnitude shows (s, ms, us or ns)."""
    name = table or (Path(source).name.split(".")[0] if source != "-" else "")
    if not name and not table_column:
        raise typer.BadParameter(
            "reading stdin needs --table or --table-column", param_hint="--table"
        )
    from engine.ingest import csvingest  # (a CSV reader: lp ingests do not load it)

    csv_options = CsvOptions(
        table=name,
        ts_column=ts_column,
        ts_format=ts_format,
        tags=[t for t in tags.split(",") if t],
        table_column=table_column,
        schema=csvingest.parse_schema(schema),
        delimiter=delimiter,
        tz=tz,
    )
    options = IngestOptions(
        batch_rows=batch_rows,
        on_error=on_error,
        rejects=rejects,
        flush_interval=_seconds(flush_interval),
    )
    _run(ctx, db, "csv", source, options, csv_options)
