"""Every runbook's shell blocks run as written, in order, against the demo data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import Database
from engine.log.reader import scan_file
from tests.conftest import CLEAN_ENV, ROOT, run_cli, start_writer

RUNBOOKS = sorted((ROOT / "examples" / "runbooks").glob("*.md"))
DEMO = "tsadmin_demo"


def shell_of(runbook: Path) -> str:
    blocks = re.findall(r"```sh\n(.*?)```", runbook.read_text(), flags=re.S)
    assert blocks, f"{runbook.name} has no sh block"
    return "set -euo pipefail\n" + "\n".join(blocks)


def damage_the_wal(data_dir: Path) -> None:
    """Leave committed records in the WAL (a writer that died), then flip a byte mid-file."""
    db_dir = data_dir / DEMO
    child = start_writer(db_dir, DEMO, "--batches", "6", "--rows", "5", "--no-close")
    child.communicate(timeout=60)
    path = db_dir / "wal" / "current.wal"
    records = scan_file(path).records
    data = bytearray(path.read_bytes())
    data[records[len(records) // 2].offset + 30] ^= 0xFF
    path.write_bytes(bytes(data))
    assert run_cli(data_dir, "select", DEMO, "w_a").code == 5


def damage_a_segment(data_dir: Path) -> None:
    """Flip one byte of a segment of table cpu."""
    path = sorted((data_dir / DEMO / "tables" / "cpu").rglob("*.parquet"))[0]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))
    assert run_cli(data_dir, "select", DEMO, "cpu").code == 5


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's data dir, made once per worker (1.7 CPU-s each time): every runbook
    starts from a copy of it. A database holds no absolute path, so a copy is a database
    of its own."""
    root = tmp_path_factory.mktemp("demo")
    data_dir = root / "tsdata"
    assert run_cli(root, "--format", "json", "demo", "--data-dir", str(data_dir)).code == 0
    return data_dir


@pytest.fixture
def demo_data(demo_template: Path, tmp_path: Path) -> Path:
    data_dir = tmp_path / "tsdata"
    shutil.copytree(demo_template, data_dir, symlinks=True)
    return data_dir


def run_runbook(
    runbook: Path, data_dir: Path, cwd: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The runbook's shell blocks, in order, with tsadmin on PATH and the demo data dir."""
    env = {
        **(extra or {}),
        **CLEAN_ENV,
        "PATH": f"{Path(sys.executable).parent}:{CLEAN_ENV['PATH']}",
        "TSADMIN_DATA_DIR": str(data_dir),
        "TMPDIR": str(cwd),
    }
    return subprocess.run(
        ["bash", "-c", shell_of(runbook)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_runbook_is_covered() -> None:
    names = {r.name for r in RUNBOOKS}
    assert {
        "database-will-not-open.md",
        "restore-a-table.md",
        "change-wal-level-safely.md",
        "verify-backups-nightly.md",
        "damaged-segment.md",
        "second-site.md",
    } <= names


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=lambda p: p.stem)
def test_runbook_runs_as_written(runbook: Path, tmp_path: Path, demo_data: Path) -> None:
    data_dir = demo_data
    if runbook.stem == "database-will-not-open":
        damage_the_wal(data_dir)
    if runbook.stem == "damaged-segment":
        damage_a_segment(data_dir)
    if runbook.stem == "restore-a-table":
        assert (
            run_cli(data_dir, "backup", "create", DEMO, "--to", str(tmp_path / "backups")).code == 0
        )
    settings_before = run_cli(data_dir, "--format", "json", "config", "get", DEMO).out
    extra = {}
    if runbook.stem == "second-site":  # two sites and a store, all on this machine
        extra = {  # site B is a new host: its data dir does not exist, nor its parent
            "DB": DEMO,
            "STORE": str(tmp_path / "store"),
            "SITE_A": str(data_dir),
            "SITE_B": str(tmp_path / "host-b" / "var-lib-tsadmin"),
        }
    done = run_runbook(runbook, data_dir, tmp_path, extra)
    assert done.returncode == 0, (
        f"{runbook.name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    assert "Traceback" not in done.stderr
    if runbook.stem == "change-wal-level-safely":
        after = run_cli(data_dir, "--format", "json", "config", "get", DEMO).out
        assert json.loads(after) == json.loads(settings_before), (
            "the runbook did not leave the settings as it found them"
        )
    # whatever the runbook did, the demo database opens and reads afterwards
    Database.open(data_dir / DEMO, DEMO, readonly=True).scan("cpu")


def test_damaged_segment_runbook_with_an_archive_restores_the_table(
    tmp_path: Path, demo_data: Path
) -> None:
    """The other branch of the runbook: an archive taken before the damage."""
    data_dir = demo_data
    before = run_cli(data_dir, "--format", "json", "db", "checksum", DEMO).json()["sha256"]
    assert run_cli(data_dir, "backup", "create", DEMO, "--to", str(tmp_path / "backups")).code == 0
    damage_a_segment(data_dir)
    runbook = ROOT / "examples" / "runbooks" / "damaged-segment.md"
    done = run_runbook(runbook, data_dir, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    after = run_cli(data_dir, "--format", "json", "db", "checksum", DEMO).json()["sha256"]
    assert after == before


def test_restore_a_table_runbook_before_any_backup_exists(tmp_path: Path, demo_data: Path) -> None:
    data_dir = demo_data
    before = run_cli(data_dir, "--format", "json", "db", "checksum", DEMO).json()["sha256"]
    runbook = ROOT / "examples" / "runbooks" / "restore-a-table.md"
    done = run_runbook(runbook, data_dir, tmp_path)
    assert done.returncode == 0 and "nothing to restore from" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    after = run_cli(data_dir, "--format", "json", "db", "checksum", DEMO).json()["sha256"]
    assert after == before


def test_no_runbook_exits_the_shell_it_is_pasted_into() -> None:
    """An operator pastes runbook blocks into an interactive shell: `exit` would close it."""
    import re as regex

    for runbook in RUNBOOKS:
        shell = regex.sub(r'"[^"]*"|\'[^\']*\'|#.*', "", shell_of(runbook))  # strings, comments
        assert not regex.search(r"(^|[;&|({]|then|else|do)\s*exit\b", shell, flags=regex.M), (
            runbook.name
        )


def test_the_will_not_open_runbook_starts_with_a_command_that_works_on_it(
    demo_data: Path,
) -> None:
    """Step 1 must work on the database that will not open (db show does not)."""
    data_dir = demo_data
    damage_the_wal(data_dir)
    listed = run_cli(data_dir, "--format", "json", "db", "list")
    assert listed.code == 0
    entry = next(d for d in listed.json() if d["name"] == DEMO)
    assert "writer_pid" in entry and "error" in entry
