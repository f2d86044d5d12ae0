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
