"""What killed commands leave behind is cleared, and files we create are owner-only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import CLEAN_ENV, run_cli

T0 = 1_700_000_000_000_000_000


def test_a_drop_killed_after_its_rename_is_finished_by_the_next_writer(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "doomed").code == 0
    assert run_cli(data_dir, "db", "create", "other").code == 0
    killed = run_cli(
        data_dir, "db", "drop", "doomed", "--yes", env={"TSADMIN_FAULTS": "crash@drop.after_rename"}
    )
    assert killed.code == -9
    left = [p.name for p in data_dir.iterdir() if ".dropping." in p.name]
    assert len(left) == 1
    assert run_cli(data_dir, "db", "list").code == 0
    assert [p.name for p in data_dir.iterdir() if ".dropping." in p.name] == left, (
        "a read-only command changed the data dir"
    )
    assert run_cli(data_dir, "ingest", "lp", "other", "-", stdin=f"cpu v=1 {T0}\n").code == 0
    assert sorted(p.name for p in data_dir.iterdir()) == ["other"]


def test_a_killed_backup_is_never_listed_and_prune_clears_it(
    data_dir: Path, tmp_path: Path
) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=f"cpu v=1 {T0}\n").code == 0
    store = tmp_path / "store"
    assert (
        run_cli(data_dir, "backup", "create", "m", "--to", str(store), "--name", "good").code == 0
    )
    killed = run_cli(
        data_dir,
        "backup",
        "create",
        "m",
        "--to",
        str(store),
        "--name",
        "cut",
        env={"TSADMIN_FAULTS": "crash@backup.before_rename"},
    )
    assert killed.code == -9
    assert any(p.name.startswith(".cut.tmp-") for p in store.iterdir())
    listed = run_cli(data_dir, "--format", "json", "backup", "list", str(store)).json()
    assert [a["name"] for a in listed] == ["good"]
    dry = run_cli(
        data_dir, "--format", "json", "backup", "prune", str(store), "--keep-last", "1", "--dry-run"
    ).json()
    assert [n for n in dry["leftovers_removed"] if n.startswith(".cut.tmp-")]
    assert any(p.name.startswith(".cut.tmp-") for p in store.iterdir())
    assert run_cli(data_dir, "backup", "prune", str(store), "--keep-last", "1").code == 0
    assert sorted(p.name for p in store.iterdir()) == ["good"]


def test_rejects_file_and_backup_directories_are_owner_only(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    rejects = tmp_path / "rejects.lp"
    store = tmp_path / "deep" / "er" / "store"
    script = "import os, sys; os.umask(0); from tsadmin.app import run; sys.exit(run(sys.argv[1:]))"
    for args in (
        ["ingest", "lp", "m", "-", "--on-error", "skip", "--rejects", str(rejects)],
        ["backup", "create", "m", "--to", str(store)],
    ):
        done = subprocess.run(
            [sys.executable, "-c", script, "--data-dir", str(data_dir), *args],
            input=f"cpu v=1 {T0}\nnot a line\n",
            text=True,
            capture_output=True,
            env=CLEAN_ENV,
        )
        assert done.returncode in (0, 6, 7), done.stderr
    assert stat.S_IMODE(rejects.stat().st_mode) == 0o600
    for directory in (tmp_path / "deep", tmp_path / "deep" / "er", store):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_a_rejects_file_in_a_missing_directory_is_refused_before_reading(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    result = run_cli(
        data_dir,
        "ingest",
        "lp",
        "m",
        "-",
        "--on-error",
        "skip",
        "--rejects",
        str(data_dir / "nowhere" / "r.lp"),
        stdin=f"cpu v=1 {T0}\n",
    )
    assert result.code == 1 and "does not exist" in result.err, result
    assert "internal error" not in result.err
    rows = run_cli(data_dir, "--format", "json", "db", "checksum", "m").json()["rows"]
    assert rows == 0


def test_a_name_with_a_trailing_newline_is_not_a_second_database(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "abc").code == 0
    assert run_cli(data_dir, "db", "create", "abc\n").code == 2
    assert run_cli(data_dir, "restore", str(data_dir), "--db", "abc\n").code != 0
    assert sorted(os.listdir(data_dir)) == ["abc"]
