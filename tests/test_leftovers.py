"""What killed commands leave behind is cleared, and files we create are owner-only."""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import CLEAN_ENV, run_cli
from tests.servers import make_bucket

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


# -- every command that writes, killed at a random moment ---------------------------------

DAY = 86_400 * 10**9
NOW_ISH = (time.time_ns() // DAY) * DAY
ROWS = 120_000  # enough that most commands run for a while after start-up
STEP = 6 * DAY // ROWS  # six days of rows: a retention of three expires half of them


def _lines(first: int, count: int) -> str:
    start = NOW_ISH - 6 * DAY
    return "".join(
        f"cpu,host=h{i % 40} v={i % 1000},w={i}i {start + i * STEP}\n"
        for i in range(first, first + count)
    )


@pytest.fixture(scope="module")
def template(
    tmp_path_factory: pytest.TempPathFactory, moto_env: dict[str, str]
) -> Iterator[tuple[Path, dict[str, str]]]:
    """Built once: a database ``m`` shipping to a local replica store, a standby ``s`` of
    it, a full backup in a local store and one in S3 (moto). Built in ``live`` (the
    paths its settings record), kept as ``pristine``; each test puts ``live`` back (the
    tests of one worker run one at a time)."""
    root = tmp_path_factory.mktemp("leftovers") / "live"
    root.mkdir()
    data, stores = root / "data", root / "stores"
    make_bucket(moto_env, "leftovers")
    s3_store = f"s3://leftovers/{root.name}"
    steps = [
        ("db", "create", "m"),
        ("replica", "add", "m", str(stores / "replica")),
        ("ingest", "lp", "m", str(_write(root / "rows.lp", _lines(0, ROWS)))),
        ("replicate", "m", "--once"),
        ("follow", str(stores / "replica"), "s", "--once"),
        ("backup", "create", "m", "--to", str(stores / "local"), "--name", "full"),
        ("backup", "create", "m", "--to", s3_store, "--name", "full"),
    ]
    for args in steps:
        done = run_cli(data, *args, env=moto_env)
        assert done.code == 0, (args, done.err)
    _write(root / "more.lp", _lines(ROWS, ROWS))
    shutil.copytree(root, root.with_name("pristine"), symlinks=True)
    yield root, {**moto_env, "S3_STORE": s3_store}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _same_rows_as_m(copy: str) -> Callable[[Path, dict[str, str]], bool]:
    def check(data: Path, env: dict[str, str]) -> bool:
        return _checksum(data, copy, env) == _checksum(data, "m", env)

    return check


def _checksum(data: Path, db: str, env: dict[str, str]) -> str:
    done = run_cli(data, "--format", "json", "db", "checksum", db, env=env)
    assert done.code == 0, done.err
    return str(done.json()["sha256"])


def _gone(database: str, table: str | None = None) -> Callable[[Path, dict[str, str]], bool]:
    def check(data: Path, env: dict[str, str]) -> bool:
        if table is None:
            return not (data / database).exists()
        listed = run_cli(data, "--format", "json", "table", "list", database, env=env)
        return listed.code == 0 and table not in listed.out

    return check


def _promoted(data: Path, env: dict[str, str]) -> bool:
    return run_cli(data, "ingest", "lp", "s", "-", stdin=_lines(10**7, 3), env=env).code == 0


Outcome = Callable[[Path, dict[str, str]], bool]
# name -> the command ({root}: the copy's directory, {s3}: the S3 store), the exit code
# of a rerun that finds the killed run had finished (killed after its last atomic step,
# or before the kill landed), and what must then be true
KILLED_COMMANDS: dict[str, tuple[list[str], int | None, Outcome | None]] = {
    "ingest": (["ingest", "lp", "m", "{root}/more.lp"], None, None),
    "delete": (["delete", "m", "cpu", "--start", "now-5d", "--end", "now-4d", "--yes"], None, None),
    "retention": (["config", "set", "m", "retention", "3d", "--yes"], None, None),
    "checkpoint": (["checkpoint", "m"], None, None),
    "compact": (["compact", "m"], None, None),
    "table drop": (["table", "drop", "m", "cpu", "--yes"], 1, _gone("m", "cpu")),
    "db drop": (["db", "drop", "m", "--yes"], 1, _gone("m")),
    "backup create": (["backup", "create", "m", "--to", "{root}/stores/local"], None, None),
    "backup create s3": (["backup", "create", "m", "--to", "{s3}"], None, None),
    "restore": (["restore", "{root}/stores/local/full", "r"], 1, _same_rows_as_m("r")),
    "restore s3": (["restore", "{s3}/full", "r"], 1, _same_rows_as_m("r")),
    "backup verify s3": (["backup", "verify", "{s3}/full"], None, None),
    "backup prune": (["backup", "prune", "{root}/stores/local", "--keep-last", "1"], None, None),
    "replicate": (["replicate", "m", "--once"], None, None),
    "follow": (["follow", "{root}/stores/replica", "s2", "--once"], None, _same_rows_as_m("s2")),
    "point-in-time restore": (
        ["restore", "{root}/stores/replica", "p", "--to-time", "now"],
        1,
        _same_rows_as_m("p"),
    ),
    "promote": (["promote", "s"], 2, _promoted),
}


@pytest.mark.parametrize("name", list(KILLED_COMMANDS))
def test_a_command_killed_at_a_random_moment_leaves_nothing_behind(
    name: str, template: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """SIGKILL at a random moment, then the same command again: the data directory
    holds no half-made database, no temporary or unlisted file, every database verifies,
    and ``$TMPDIR`` holds nothing but tsadmin's own (empty) scratch directory."""
    root, s3 = template
    shutil.rmtree(root)
    shutil.copytree(root.with_name("pristine"), root, symlinks=True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**s3, "TMPDIR": str(tmp)}
    args, done_code, outcome = KILLED_COMMANDS[name]
    args = [a.format(root=root, s3=s3["S3_STORE"]) for a in args]
    data = root / "data"
    seed = random.randrange(10**6)
    after = random.Random(seed).uniform(0.2, 1.5)
    killed = subprocess.Popen(
        [sys.executable, "-m", "tsadmin", "--data-dir", str(data), *args],
        env={**CLEAN_ENV, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        killed.wait(timeout=after)  # the random moment (the command may finish first)
    except subprocess.TimeoutExpired:
        killed.kill()
        killed.wait()
    said = f"{name} killed after {after:.2f} s (seed {seed}, exit {killed.returncode})"
    again = run_cli(data, *args, env=env)
    assert again.code in (0, done_code), (said, again.err)
    if outcome is not None:
        assert outcome(data, env), (said, again.code, again.err)
    assert _left_in_data_dir(data) == [], said
    for database in sorted(p.name for p in data.iterdir() if not p.name.startswith(".")):
        verified = run_cli(data, "--format", "json", "db", "verify", database, env=env)
        assert verified.code == 0, (said, database, verified.out, verified.err)
        assert not verified.json().get("notes"), (said, database, verified.out)
    assert sorted(os.listdir(tmp)) in ([], [f"tsadmin-{os.getuid()}"]), (said, os.listdir(tmp))
    scratch = tmp / f"tsadmin-{os.getuid()}"
    assert not scratch.exists() or os.listdir(scratch) == [], (said, os.listdir(scratch))
    stores = root / "stores" / "local"
    assert [p.name for p in stores.iterdir() if ".tmp-" in p.name] == [], said


def _left_in_data_dir(data: Path) -> list[str]:
    """Half-made databases (``.NAME.creating.PID`` and the like) and temporary files."""
    hidden = [p.name for p in data.iterdir() if p.name.startswith(".") and p.is_dir()]
    temporary = [str(p.relative_to(data)) for p in data.rglob("*.tmp*")]
    return hidden + temporary


def test_a_writer_opening_removes_unlisted_segment_files_and_the_directories_they_leave(
    data_dir: Path,
) -> None:
    """What a crash between a segment's write and its install leaves: files no manifest
    lists, possibly in a partition directory of their own. The next writer removes
    them and the directories left empty; listed files and their directories stay."""
    lines = "cpu,host=a v=1 1700000000000000000\ncpu,host=a v=2 1700003600000000000\n"
    assert run_cli(data_dir, "db", "create", "m", "--partition", "1h").code == 0
    load = run_cli(data_dir, "ingest", "lp", "m", "-", stdin=lines)
    assert load.code == 0, load.err
    tables = data_dir / "m" / "tables"
    listed = sorted(p for p in tables.rglob("*") if p.is_file())
    assert len(listed) == 2
    beside = listed[0].parent / "000099.parquet"
    alone = tables / "cpu" / "p1" / "000098.parquet"
    deep = tables / "mem" / "p2" / "000097.parquet"
    for stray in (beside, alone, deep):
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"PAR1 left by a crash")
    assert run_cli(data_dir, "checkpoint", "m").code == 0
    assert sorted(p for p in tables.rglob("*") if p.is_file()) == listed
    assert sorted(p for p in tables.rglob("*") if p.is_dir()) == sorted(
        {tables / "cpu", *(p.parent for p in listed)}
    )
