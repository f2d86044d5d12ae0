"""Arguments many commands share, one definition each, with shell completion: a
database name completes from the data directory, a table from the database on the
line, a setting key from the keys ``config set`` takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine import list_databases, ops, resolve_data_dir
from engine.errors import EngineError
from engine.settings import SETTABLE_KEYS


def _data_dir(ctx: typer.Context) -> Path:
    given = ctx.find_root().params.get("data_dir")
    return resolve_data_dir(Path(given) if given else None)


def complete_database(ctx: typer.Context, incomplete: str) -> list[str]:
    try:
        names = list_databases(_data_dir(ctx))
    except (EngineError, OSError):
        return []  # completion never fails loudly: no data dir, no names
    return [n for n in names if n.startswith(incomplete)]


def complete_table(ctx: typer.Context, incomplete: str) -> list[str]:
    db = ctx.params.get("db") or ctx.params.get("name")
    if not db:
        return []
    try:
        with ops.reading(_data_dir(ctx), str(db)) as opened:
            names = opened.tables()
    except (EngineError, OSError):
        return []
    return [n for n in names if n.startswith(incomplete)]


def complete_key(incomplete: str) -> list[str]:
    return [k for k in SETTABLE_KEYS if k.startswith(incomplete)]


Db = Annotated[
    str,
    typer.Argument(
        help="Database name.",
        show_default=False,
        metavar="DB",
        autocompletion=complete_database,
    ),
]
OptionalDb = Annotated[
    str | None,
    typer.Argument(
        help="Database name.",
        show_default=False,
        metavar="DB",
        autocompletion=complete_database,
    ),
]
Table = Annotated[
    str,
    typer.Argument(
        help="Table name.", show_default=False, metavar="TABLE", autocompletion=complete_table
    ),
]


# -- the database as a positional argument, --db kept as an alias for a release --------

DbAlias = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="The same as the DB argument (kept for scripts written before it).",
        hidden=True,
        autocompletion=complete_database,
    ),
]


def one_database(positional: str | None, alias: str | None, *, required: bool) -> str | None:
    """The database named by the DB argument or by ``--db`` (the same name if both)."""
    if positional is not None and alias is not None and positional != alias:
        raise typer.BadParameter(
            f"the DB argument says {positional}, --db says {alias}: name it once",
            param_hint="DB",
        )
    name = positional if positional is not None else alias
    if name is None and required:
        raise typer.BadParameter("name the database", param_hint="DB")
    return name
