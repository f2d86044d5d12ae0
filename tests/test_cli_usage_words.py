"""A refused option value is said in an operator's words, not the parser's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("x", "Invalid value for '--limit': expected a whole number, like 5000"),
        ("1.5", "Invalid value for '--limit': expected a whole number, like 5000"),
        ("-3", "Invalid value for '--limit': -3 is too small: expected at least 0"),
    ],
)
def test_bad_numbers_in_plain_words(tmp_path: Path, value: str, words: str) -> None:
    done = run_cli(tmp_path, "select", "m", "cpu", "--limit", value)
    assert done.code == 2
    assert done.err.splitlines()[0] == f"Error: {words}"


COMMAND_WORDS = (
    "db", "wal", "backup", "replica", "follow", "promote", "replicate", "checkpoint",
    "select", "restore", "ingest", "serve", "config", "table", "delete", "compact",
)  # fmt: skip


def test_engine_messages_name_no_command() -> None:
    """The engine says what to do in words (and a Remedy the CLI words as its command):
    a message naming a CLI command or flag belongs in tsadmin/, not in engine/."""
    import ast
    import re

    root = Path(__file__).resolve().parent.parent / "engine"
    words = "|".join(COMMAND_WORDS)
    naming = re.compile(rf"\btsadmin ({words})\b|(^|\s)--[a-z]")
    harness = {"crashsim.py", "workload.py", "demo.py"}  # programs of their own (issue 26)
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name in harness:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(owner.body[0].value)
            for owner in ast.walk(tree)
            if isinstance(owner, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and owner.body
            and isinstance(owner.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                other_tool = "influx " in node.value  # InfluxDB's CLI, not ours
                if id(node) not in docstrings and naming.search(node.value) and not other_tool:
                    found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value[:70]!r}")
    assert found == [], "\n".join(found)
