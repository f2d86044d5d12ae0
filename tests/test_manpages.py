"""The man pages match the CLI, and every command and option explains itself."""

from __future__ import annotations

from typing import Any

import typer

from tests.conftest import ROOT
from tsadmin.app import build_app
from tsadmin.manpage import render_pages


def test_committed_man_pages_match_the_cli() -> None:
    pages = render_pages()
    on_disk = {p.name: p.read_text() for p in (ROOT / "man").glob("*.1")}
    assert set(on_disk) == set(pages), "pages added or removed: run 'make man'"
    stale = [name for name, text in pages.items() if on_disk[name] != text]
    assert not stale, f"out of date with the CLI: {stale}; run 'make man'"


def _commands(command: Any, path: str) -> list[tuple[str, Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _commands(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    missing = []
    for path, command in _commands(typer.main.get_command(build_app()), "tsadmin"):
        if not command.help:
            missing.append(path)
        missing += [f"{path} {p.name}" for p in command.params if not getattr(p, "help", None)]
    assert not missing, f"without help text: {missing}"


def test_every_group_and_command_has_a_page() -> None:
    root = typer.main.get_command(build_app())
    commands = list(root.commands)  # type: ignore[attr-defined]
    groups = [n for n, c in root.commands.items() if hasattr(c, "commands")]  # type: ignore[attr-defined]
    assert {f"tsadmin-{c}.1" for c in commands} | {"tsadmin.1"} == set(render_pages())
    assert {"db", "wal", "backup", "crash", "ingest", "config", "table"} <= set(groups)
    assert {"serve", "restore", "follow", "promote", "metrics"} <= set(commands)
    serve = render_pages()["tsadmin-serve.1"]
    assert ".SH OPTIONS" in serve and "\\-\\-bind" in serve


def test_no_command_summary_is_cut_in_the_help_lists() -> None:
    """Issue 25: `tsadmin --help` cut summaries ("Keep a standby of the primary...")."""
    import click
    import typer

    from tsadmin.app import build_app

    root = typer.main.get_command(build_app())
    cut = []

    def walk(group: click.Group, ctx: click.Context, path: str) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None
            summary = command.get_short_help_str(limit=60)
            if summary.endswith("..."):
                cut.append(f"{path}{name}: {summary}")
            if isinstance(command, click.Group):
                walk(command, click.Context(command, parent=ctx), f"{path}{name} ")

    walk(root, click.Context(root), "")  # type: ignore[arg-type]
    assert not cut, cut
