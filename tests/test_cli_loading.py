"""A command line loads only the module of its command (start-up time); the table that
says which module that is must match the full command tree, or a command would vanish."""

from __future__ import annotations

import subprocess
import sys

import typer

from tests.conftest import ROOT
from tsadmin.app import COMMAND_MODULES, build_app


def _top_level(modules: set[str] | None) -> set[str]:
    return set(typer.main.get_command(build_app(modules)).commands)  # type: ignore[attr-defined]


def test_every_command_has_its_module_and_only_it() -> None:
    assert _top_level(None) == set(COMMAND_MODULES)
    for word, module in COMMAND_MODULES.items():
        assert word in _top_level({module}), f"{word} is not registered by {module}"


def test_a_command_line_loads_only_its_module() -> None:
    probe = (
        "import sys; from tsadmin.app import run; run(['promote', '--help']); "
        "print(sorted(m for m in sys.modules if m.startswith('tsadmin.commands.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "['tsadmin.commands.replication']"
    assert "engine.archive.backup" not in out


def test_an_unknown_word_still_lists_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tsadmin", "promot"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "No such command 'promot'. Did you mean 'promote'?" in done.stderr
