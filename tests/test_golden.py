"""Golden files (tests/testdata, made by tests/testdata/make_golden.py): files written by
the landed 0.1.0 code (commit 3debe46) still read as they did, and the current code still
writes the format the current golden files hold, so a silent format change fails here.

When a format changes on purpose, bump its version, keep reading the old one, and make a
new golden directory with the new code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine.log import wal
from engine.log.reader import scan_file
from tests.conftest import CLEAN_ENV, ROOT, run_cli

GOLDEN = ROOT / "tests" / "testdata"
# 0.1.0; 0.2 (segment digests, WAL version 1); 0.3 (identities, WAL version 2);
# 0.4 (a DELETE record in the WAL, WAL version 3); current (segment footer digests)
VERSIONS = [
    "golden-0.1.0-3debe46",
    "golden-0.2-a539e9b",
    "golden-0.3-875b694",
    "golden-0.4-452160a",
    "golden-current",
]


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(GOLDEN / name, target)
    return target


@pytest.mark.parametrize("name", VERSIONS)
def test_a_database_written_by_that_version_reads_the_same(name: str, tmp_path: Path) -> None:
    golden = _copy(name, tmp_path)
    expected = json.loads((golden / "expected.json").read_text())
    data = golden / "data"
    got = run_cli(data, "--format", "json", "db", "checksum", "golden")
    assert got.code == 0, got.err
    assert got.json()["sha256"] == expected["sha256"] and got.json()["rows"] == expected["rows"]
    verified = run_cli(data, "--format", "json", "db", "verify", "golden")
    assert verified.code == 0, verified.out
    if name.startswith("golden-0.1.0"):
        assert verified.json()["segments_without_digest"] == verified.json()["segments"]
    # a writer opens it (replaying the WAL it left), checkpoints, and it still reads the same
    assert run_cli(data, "checkpoint", "golden").code == 0
    again = run_cli(data, "--format", "json", "db", "checksum", "golden").json()
    assert again["sha256"] == expected["sha256"]


@pytest.mark.parametrize("name", VERSIONS)
def test_an_archive_written_by_that_version_restores_the_same(name: str, tmp_path: Path) -> None:
    golden = _copy(name, tmp_path)
    expected = json.loads((golden / "expected.json").read_text())
    data = tmp_path / "fresh"
    data.mkdir()
    archive = golden / "store" / "full"
    assert run_cli(data, "backup", "verify", str(archive)).code == 0
    assert run_cli(data, "restore", str(archive), "--db", "back").code == 0
    got = run_cli(data, "--format", "json", "db", "checksum", "back").json()
    assert got["sha256"] == expected["sha256"]


def _shape(value: Any) -> Any:
    """The keys and value types of a JSON document, not its values."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _wal_layout(path: Path) -> list[tuple[int, int, str, int]]:
    scan = scan_file(path)
    return [(r.lsn, r.txn, r.type.name, r.offset) for r in scan.records]


def test_the_current_code_writes_the_current_golden_format(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(GOLDEN / "make_golden.py"), str(tmp_path / "now")],
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    now, golden = tmp_path / "now", GOLDEN / "golden-current"
    for rel in ("data/golden/manifest.json", "store/full/manifest.json"):
        assert _shape(json.loads((now / rel).read_text())) == _shape(
            json.loads((golden / rel).read_text())
        ), f"{rel} changed shape: bump its format version and add golden files"
    ours, theirs = now / "data/golden/wal/current.wal", golden / "data/golden/wal/current.wal"
    mine, golden_header = (wal.parse_file_header(p.read_bytes(), p) for p in (ours, theirs))
    same = ("version", "start_lsn", "database", "size", "epoch")  # the UUID is each database's
    assert [getattr(mine, k) for k in same] == [getattr(golden_header, k) for k in same], (
        "the WAL header changed"
    )
    assert mine.uuid and golden_header.uuid
    assert [r[:3] for r in _wal_layout(ours)] == [r[:3] for r in _wal_layout(theirs)]
    assert (
        json.loads((now / "expected.json").read_text())["sha256"]
        == json.loads((golden / "expected.json").read_text())["sha256"]
    )
