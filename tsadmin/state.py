"""Global options, shared by every command through Typer's context."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from engine import resolve_data_dir


@dataclass
class State:
    data_dir: Path
    format: str = "table"
    quiet: bool = False
    progress: bool = True
    debug: bool = False

    @property
    def show_progress(self) -> bool:
        """A progress bar only for a person at a terminal (never under cron)."""
        return self.progress and not self.quiet and sys.stderr.isatty()


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State(data_dir=resolve_data_dir(None))
    return root.obj


def note(ctx: typer.Context, message: str) -> None:
    """A human message on stderr, unless --quiet."""
    if not state(ctx).quiet:
        typer.echo(message, err=True)


def command_group(help_text: str, short_help: str | None = None) -> typer.Typer:
    """A command group with the house settings: plain text errors and help (scripts and
    man pages read them), -h as well as --help; ``short_help`` for the command list when
    the help's first sentence would be cut there."""
    return typer.Typer(
        help=help_text,
        short_help=short_help,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
