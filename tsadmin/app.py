"""The tsadmin command line: global options, command groups, and the one exit point."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from engine import EngineError, InvalidArgument, __version__, resolve_data_dir
from tsadmin import signals
from tsadmin.commands import (
    backup,
    config,
    crash,
    db,
    deleting,
    ingest,
    maintenance,
    query,
    replication,
    serving,
    table,
    wal,
)
from tsadmin.commands import demo as demo_cmd
from tsadmin.commands import metrics as metrics_cmd
from tsadmin.errors import Exit, exit_code_for, worded
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
replication.register(app)
deleting.register(app)
serving.register(app)
metrics_cmd.register(app)


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
        str,
        typer.Option(
            "--format",
            envvar="TSADMIN_FORMAT",
            help="Output format: table, json or csv.",
            metavar="table|json|csv",
        ),
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


_ERRORS_AS_JSON = [False]  # set by run() when the output format is json


def _fail(message: str, hint: str | None, code: int) -> int:
    """The one way an error leaves: two lines on stderr, or with ``--format json`` one
    JSON object (``error``, ``hint``, ``exit_code``) that a script can parse."""
    if _ERRORS_AS_JSON[0]:
        body = {"error": message, "hint": hint, "exit_code": int(code)}
        typer.echo(json.dumps(body, ensure_ascii=False), err=True)
        return code
    typer.echo(f"Error: {message}", err=True)
    if hint:
        typer.echo(f"Try: {hint}", err=True)
    return code


def _output_format(args: list[str]) -> str:
    """The --format the line asks for (global options are hoisted to the front)."""
    for i, arg in enumerate(args):
        if arg == "--format" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--format="):
            return arg.split("=", 1)[1]
    return os.environ.get("TSADMIN_FORMAT", "table")


# Global options are accepted anywhere on the line, as restic, kubectl and the influx CLI
# accept them: those after the subcommand are moved in front of it.
_GLOBAL_FLAGS = {"--quiet", "-q", "--no-progress", "--debug"}
_GLOBAL_VALUED = {"--data-dir", "--format"}


def hoist_global_options(args: list[str]) -> list[str]:
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name = arg.split("=", 1)[0]
        if arg == "--":
            rest += args[i:]
            break
        if name in _GLOBAL_VALUED and "=" not in arg and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        (front if name in _GLOBAL_VALUED or arg in _GLOBAL_FLAGS else rest).append(arg)
        i += 1
    return front + rest


def _committed(exc: BaseException) -> str:
    rows = getattr(exc, "committed_rows", None)
    if rows is None or (rows == 0 and isinstance(exc, InvalidArgument)):
        return ""  # a refused option or value: nothing was written, nothing to say
    lsn = getattr(exc, "committed_lsn", None)
    at = f", up to LSN {lsn}" if lsn else ""
    return f" ({rows:,} rows committed before it{at}; re-running is safe)"


def _usage_error(exc: UsageError) -> int:
    if isinstance(exc, NoArgsIsHelpError) and exc.ctx is not None:
        typer.echo(exc.ctx.get_help(), err=True)
        return Exit.USAGE
    where = exc.ctx.command_path if exc.ctx is not None else "tsadmin"
    return _fail(_plain_words(exc.format_message()), f"{where} --help", Exit.USAGE)


# The parser's validation phrases, as an operator would say them.
_PHRASES = (
    (re.compile(r"Input should be a valid integer[^.]*"), "expected a whole number, like 5000"),
    (re.compile(r"Input should be a valid number[^.]*"), "expected a number, like 0.5"),
    (re.compile(r"Input should be a valid boolean[^.]*"), "expected true or false"),
    (re.compile(r"Input should be greater than or equal to (\S+)"), r"expected at least \1"),
)


def _plain_words(message: str) -> str:
    for pattern, words in _PHRASES:
        message = pattern.sub(words, message)
    return message


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; every error leaves through here."""
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _ERRORS_AS_JSON[0] = _output_format(args) == "json"
    signals.install()
    try:
        code = app(args=args, prog_name="tsadmin", standalone_mode=False)
        return code if isinstance(code, int) else Exit.OK
    except UsageError as exc:
        return _usage_error(exc)
    except ClickException as exc:
        return _fail(exc.format_message(), None, exc.exit_code)
    except EngineError as exc:
        if debug:
            traceback.print_exc()
        return _fail(worded(exc) + _committed(exc), exc.hint, exit_code_for(exc))
    except signals.Interrupted as exc:
        return _fail(
            exc.word + (_committed(exc) or "; nothing was left half-written"),
            "re-run the command when ready",
            exc.exit_code,
        )
    except signals.PipeClosed:
        _silence_stdout()
        return Exit.OK  # the reader had enough (| head): not an error
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except Exception as exc:  # a bug: say so in one line, the traceback only with --debug
        if debug:
            traceback.print_exc()
        return _fail(
            f"internal error: {type(exc).__name__}: {exc}",
            "re-run with --debug and report the traceback",
            Exit.FAILURE,
        )


def _silence_stdout() -> None:
    """After the reader left, nothing more may be flushed to the closed pipe at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    # `kill -USR1 PID` prints every thread's stack of a tsadmin that seems stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    code = run()
    # Leave without the interpreter's teardown: Arrow's native thread pools can abort the
    # process there (std::terminate, exit -6) after the command has finished and reported
    # (apache/arrow#34314). Everything the command wrote is closed and fsynced by now.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, signals.PipeClosed):
            stream.flush()
    os._exit(code)
