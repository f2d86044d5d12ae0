"""A command line loads only the module of its command (start-up time); the table that
says which module that is must match the full command tree, or a command would vanish."""

from __future__ import annotations

import os
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


def test_listing_databases_imports_neither_pyarrow_nor_package_metadata(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """pyarrow (130 ms with compute and parquet) loads on first use, and CRC-32C comes
    without its package's ``importlib.metadata`` (30 ms): a command that decodes no
    batch pays for neither. Checked by what is imported, not by a time."""
    data = tmp_path / "data"
    subprocess.run(
        [sys.executable, "-m", "tsadmin", "--data-dir", str(data), "db", "create", "a"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    probe = (
        "import sys; from tsadmin.app import run\n"
        f"try: run(['--data-dir', {str(data)!r}, 'db', 'list'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pyarrow', 'crc32c', 'importlib') and m not in ('importlib', 'importlib.util', "
        "'importlib.machinery', 'importlib._bootstrap', 'importlib._bootstrap_external', "
        "'importlib._abc')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = out.strip().splitlines()
    assert lines[2].split()[0] == "a", out  # the listing itself, below its header
    assert lines[-1] == "[]"


def _allocator(env: dict[str, str]) -> str:
    probe = (
        "from engine.arrowmods import pa, pc; pc.add(pa.array([1]), 1); "
        "print(pa.default_memory_pool().backend_name)"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert run.returncode == 0 and not run.stderr, run.stderr
    return run.stdout.strip()


def test_arrow_allocates_with_jemalloc_unless_told_otherwise() -> None:
    """The engine's first use of pyarrow makes jemalloc the pool (mimalloc, the wheels'
    default, keeps what a long scan frees); ARROW_DEFAULT_MEMORY_POOL still decides."""
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert _allocator(env) == "jemalloc"
    assert _allocator({**env, "ARROW_DEFAULT_MEMORY_POOL": "system"}) == "system"
