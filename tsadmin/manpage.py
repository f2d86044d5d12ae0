"""Man pages generated from the Typer command tree (never written by hand).

``python -m tsadmin.manpage DIR`` writes ``tsadmin.1`` (global options, the
top-level commands, exit codes, environment, files) and one
``tsadmin-<group>.1`` per command group and ``tsadmin-<command>.1`` per top-level
command. ``make man`` runs it; a test fails
when the committed pages differ from what the CLI generates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from engine import __version__
from tsadmin.app import build_app
from tsadmin.errors import Exit

_EXIT_MEANINGS = {
    Exit.OK: "success",
    Exit.FAILURE: "failure: not found, already exists, disk full, I/O error",
    Exit.USAGE: "usage: a bad option, name or value",
    Exit.VERIFY_FAILED: "verification found problems (wal verify, backup verify, crash simulate)",
    Exit.LOCKED: "the database is locked by another writer",
    Exit.CORRUPT: "the database, or one of its files, is corrupt",
    Exit.BAD_INPUT: "bad input data: ingest stopped at a bad line, or a field type conflict",
    Exit.PARTIAL: "partial load: ingest finished but rejected some lines (--on-error skip)",
    Exit.NOT_REPLICATED: "wal_level byrl: the write is durable locally but no replica store "
    "confirmed it in time",
    Exit.WRITES_REFUSED: "writes refused: the database is a standby, or fenced by a promotion",
}


def _esc(text: str) -> str:
    """Escape text for roff: backslashes, leading dots and quotes, hyphens in options."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _synopsis(path: str, command: Any) -> str:
    parts = [f".B {_esc(path)}"]
    for param in command.params:
        if param.param_type_name == "argument":
            name = param.metavar or param.name.upper()
            parts.append(f"\\fI{_esc(name)}\\fR" if param.required else f"[\\fI{_esc(name)}\\fR]")
    if any(p.param_type_name == "option" for p in command.params):
        parts.append("[\\fIOPTIONS\\fR]")
    return parts[0] + "\n" + " ".join(parts[1:]) if len(parts) > 1 else parts[0]


def _option_lines(command: Any) -> list[str]:
    lines = []
    for param in command.params:
        if param.param_type_name == "argument":
            name = param.metavar or param.name.upper()
            lines += [".TP", f"\\fI{_esc(name)}\\fR", _esc(param.help or "")]
            continue
        flags = ", ".join(f"\\fB{_esc(o)}\\fR" for o in [*param.opts, *param.secondary_opts])
        value = "" if param.is_flag else f" \\fI{_esc(param.name.upper())}\\fR"
        default = param.default
        tail = (
            ""
            if param.is_flag or default in (None, "", ())
            else f" [default: {_esc(str(default))}]"
        )
        lines += [".TP", flags + value, _esc(param.help or "") + tail]
    return lines


def _command_section(path: str, command: Any) -> list[str]:
    lines = [".SS " + _esc(path), _synopsis(path, command), ".PP", _esc(command.help or "")]
    options = _option_lines(command)
    if options:
        lines += [".RS", *options, ".RE"]
    return lines


def _header(name: str, summary: str) -> list[str]:
    return [
        f'.TH {name.upper()} 1 "" "tsadmin {__version__}" "tsadmin manual"',
        ".SH NAME",
        f"{_esc(name)} \\- {_esc(summary)}",
    ]


def _group_page(name: str, group: Any) -> str:
    lines = _header(f"tsadmin-{name}", group.help or "")
    lines += [
        ".SH SYNOPSIS",
        f".B tsadmin {name}",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]",
    ]
    lines += [".SH COMMANDS"]
    for sub_name, sub in group.commands.items():
        lines += _command_section(f"tsadmin {name} {sub_name}", sub)
    lines += [".SH SEE ALSO", "\\fBtsadmin\\fR(1)"]
    return "\n".join(lines) + "\n"


def _command_page(name: str, command: Any) -> str:
    """A page of its own for a top-level command (``man tsadmin-serve``)."""
    summary = command.short_help or (command.help or "").split("\n", 1)[0]
    lines = _header(f"tsadmin-{name}", summary.rstrip("."))
    lines += [".SH SYNOPSIS", _synopsis(f"tsadmin {name}", command)]
    lines += [".SH DESCRIPTION", _esc(command.help or "")]
    options = _option_lines(command)
    if options:
        lines += [".SH OPTIONS", *options]
    lines += [".SH SEE ALSO", "\\fBtsadmin\\fR(1)"]
    return "\n".join(lines) + "\n"


def _main_page(root: Any, groups: list[str]) -> str:
    lines = _header("tsadmin", root.help or "")
    lines += [
        ".SH SYNOPSIS",
        ".B tsadmin",
        "[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
    ]
    lines += [".SH GLOBAL OPTIONS", *_option_lines(root)]
    lines += [".SH COMMAND GROUPS"]
    for name in groups:
        lines += [".TP", f"\\fBtsadmin\\-{_esc(name)}\\fR(1)", _esc(root.commands[name].help or "")]
    lines += [".SH COMMANDS"]
    for name, command in root.commands.items():
        if name not in groups:
            lines += _command_section(f"tsadmin {name}", command)
    lines += [".SH EXIT STATUS"]
    for code, meaning in _EXIT_MEANINGS.items():
        lines += [".TP", f"\\fB{int(code)}\\fR", _esc(meaning)]
    lines += [
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBTSADMIN_DATA_DIR\\fR",
        "The data directory when \\fB\\-\\-data\\-dir\\fR is not given (else ./tsdata).",
        ".TP",
        "\\fBTSADMIN_SHIP_INTERVAL\\fR",
        "Seconds between background shipping rounds of a writer (default 1).",
        ".TP",
        "\\fBTMPDIR\\fR",
        "Where \\fItsadmin\\-UID/\\fR holds scratch files: backups staged for a remote store, "
        "archives fetched from one, the run files of a read of many segments (default /tmp).",
        ".SH FILES",
        ".TP",
        "\\fIDATA_DIR/DB/manifest.json\\fR",
        "Settings, schemas, live segments and the checkpoint LSN of database DB.",
        ".TP",
        "\\fIDATA_DIR/DB/wal/current.wal\\fR, \\fIcheckpoint.wal\\fR",
        "The write\\-ahead log.",
        ".TP",
        "\\fIDATA_DIR/DB/tables/\\fR",
        "zstd Parquet segments, one per table, time partition and checkpoint.",
        ".SH SEE ALSO",
        ", ".join(f"\\fBtsadmin\\-{_esc(n)}\\fR(1)" for n in root.commands),
    ]
    return "\n".join(lines) + "\n"


def render_pages() -> dict[str, str]:
    """File name -> roff text of every page."""
    root = typer.main.get_command(build_app())
    groups = [name for name, cmd in root.commands.items() if hasattr(cmd, "commands")]  # type: ignore[attr-defined]
    pages = {"tsadmin.1": _main_page(root, groups)}
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        page = _group_page(name, command) if name in groups else _command_page(name, command)
        pages[f"tsadmin-{name}.1"] = page
    return pages


def write_pages(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_pages().items():
        (directory / name).write_text(text)
        written.append(directory / name)
    return written


if __name__ == "__main__":
    for path in write_pages(Path(sys.argv[1] if len(sys.argv) > 1 else "man")):
        print(path)
