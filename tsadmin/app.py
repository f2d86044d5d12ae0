"""The tsadmin command line: global options, command groups, and the one exit point."""

from __future__ import annotations

import faulthandler
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from engine import EngineError, __version__, resolve_data_dir
from tsadmin.commands import backup, config, crash, db, ingest, maintenance, query, table, wal
from tsadmin.commands import demo as demo_cmd
from tsadmin.errors import Exit, exit_code_for
from tsadmin.render import FORMATS
from tsadmin.state import State, command_group

app = command_group(
    "Operations toolkit for an embedded time-series engine: databases, ingest, "
    "WAL levels, checkpoints, crash recovery, WAL repair."
)
app.add_typer(db.app, name="db")
app.add_typer(table.app, name="table")
app.add_typer(config.app, name="config")
app.add_typer(ingest.app, name="ingest")
app.add_typer(wal.app, name="wal")
app.add_typer(crash.app, name="crash")
backup.register(app)
query.register(app)
maintenance.register(app)
demo_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tsadmin {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory holding the databases [default: $TSADMIN_DATA_DIR, else ./tsdata]",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Output format: table, json or csv.")
    ] = "table",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No messages on stderr.")] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="Never show a progress bar.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    if fmt not in FORMATS:
        raise typer.BadParameter(f"use one of {', '.join(FORMATS)}", param_hint="--format")
    ctx.obj = State(
        data_dir=resolve_data_dir(data_dir),
        format=fmt,
        quiet=quiet,
        progress=not no_progress,
        debug=debug,
    )


def _fail(message: str, hint: str | None, code: int) -> int:
    typer.echo(f"Error: {message}", err=True)
    if hint:
        typer.echo(f"Try: {hint}", err=True)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; every error leaves through here.

    Typer (standalone) reports usage errors itself, with exit code 2; engine
    errors and anything unexpected are turned into one line on stderr here.
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="tsadmin")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except EngineError as exc:
        if "--debug" in args:
            traceback.print_exc()
        message = exc.message
        if exc.committed_rows is not None:
            message += f" ({exc.committed_rows:,} rows committed before it; re-running is safe)"
        return _fail(message, exc.hint, exit_code_for(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", "re-run the command; writes are upserts", 130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (| head): not an error
        return Exit.OK
    except Exception as exc:  # a bug: say so in one line, the traceback only with --debug
        if "--debug" in args:
            traceback.print_exc()
        return _fail(
            f"internal error: {type(exc).__name__}: {exc}",
            "re-run with --debug and report the traceback",
            Exit.FAILURE,
        )
    return Exit.OK


def main() -> None:
    # `kill -USR1 PID` prints every thread's stack of a tsadmin that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sys.exit(run())
