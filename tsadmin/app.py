"""The tsadmin command line: global options, command groups, and the one exit point."""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import importlib
import json
import os
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer
from typer._click.core import Command
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from engine import EngineError, InvalidArgument, __version__, resolve_data_dir
from tsadmin import signals
from tsadmin.errors import Exit, exit_code_for, hint_of, worded
from tsadmin.render import FORMATS
from tsadmin.state import State, command_group

# The module that registers each top-level command. A command line loads only the module
# of its command (``promote`` or ``ingest`` start ~0.1 s sooner without the backup,
# crash-test, metrics and serving code); help, completion and an unknown word load them
# all. tests/test_cli_loading.py holds this table to the full command tree.
COMMAND_MODULES = {
    "db": "db",
    "table": "table",
    "config": "config",
    "ingest": "ingest",
    "wal": "wal",
    "crash": "crash",
    "backup": "backup",
    "restore": "backup",
    "select": "query",
    "checkpoint": "maintenance",
    "compact": "maintenance",
    "recover": "maintenance",
    "demo": "demo",
    "replica": "replication",
    "replicate": "replication",
    "follow": "replication",
    "promote": "replication",
    "delete": "deleting",
    "serve": "serving",
    "metrics": "metrics",
}
_GROUPS = {"db", "table", "config", "ingest", "wal", "crash"}  # added whole, by name
_HELP_ORDER = list(dict.fromkeys(COMMAND_MODULES.values()))  # the table is in help's order


def build_app(modules: set[str] | None = None) -> typer.Typer:
    """The command tree with the commands of ``modules`` (all when None), in the order
    help lists them."""
    root = command_group(
        "Operations toolkit for an embedded time-series engine: databases, ingest, "
        "WAL levels, checkpoints, crash recovery, WAL repair."
    )
    root.callback()(main_options)
    for name in _HELP_ORDER:
        if modules is not None and name not in modules:
            continue
        module = importlib.import_module(f"tsadmin.commands.{name}")
        if name in _GROUPS:
            root.add_typer(module.app, name=name)
        else:
            module.register(root)
    return root


@functools.cache
def _command(modules: frozenset[str] | None) -> Command:
    """The parser of the command tree with ``modules``: Typer derives it from every
    command's signature (about 10 ms), so a process that runs several command lines
    (tests, a library user) derives each tree once."""
    return typer.main.get_command(build_app(None if modules is None else set(modules)))


def _command_word(args: list[str]) -> str | None:
    """The top-level command of a hoisted command line (global options come first)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _GLOBAL_VALUED:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def _modules_for(args: list[str]) -> set[str] | None:
    """The one module a command line needs, or None (all) for help, completion, or a
    word that is no command (so the parser can say so and list the commands)."""
    if any(k.endswith("_COMPLETE") and k.startswith("_") for k in os.environ):
        return None
    word = _command_word(args)
    if word is None and "--version" in args:
        return set()  # the version needs no command
    module = COMMAND_MODULES.get(word or "")
    return None if module is None else {module}


def _version(value: bool) -> None:
    if value:
        from engine.ingest.parserchoice import active

        typer.echo(f"tsadmin {__version__} ({active()} line-protocol parser)")
        raise typer.Exit()


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
            help="Output format: table, json, jsonl (one object per line) or csv.",
            metavar="table|json|jsonl|csv",
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
    (
        re.compile(r"'[^']*' is not a valid int(eger)?( range)?\."),
        "expected a whole number, like 5000",
    ),
    (re.compile(r"'[^']*' is not a valid float( range)?\."), "expected a number, like 0.5"),
    (re.compile(r"'[^']*' is not a valid boolean\."), "expected true or false"),
    (
        re.compile(r"(\S+) is not in the range x>=(\S+?)\.?$"),
        r"\1 is too small: expected at least \2",
    ),
)


def _plain_words(message: str) -> str:
    for pattern, words in _PHRASES:
        message = pattern.sub(words, message)
    return message


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; every error leaves through here."""
    args = hoist_global_options(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    _ERRORS_AS_JSON[0] = _output_format(args) in ("json", "jsonl")
    signals.install()
    try:
        modules = _modules_for(args)
        command = _command(None if modules is None else frozenset(modules))
        code = command.main(args=args, prog_name="tsadmin", standalone_mode=False)
        return code if isinstance(code, int) else Exit.OK
    except UsageError as exc:
        return _usage_error(exc)
    except ClickException as exc:
        return _fail(exc.format_message(), None, exc.exit_code)
    except EngineError as exc:
        if debug:
            traceback.print_exc()
        return _fail(worded(exc) + _committed(exc), hint_of(exc), exit_code_for(exc))
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
