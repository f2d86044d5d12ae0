"""What an operator sees: exit codes, one-line errors, signals, pipes, a read-only disk.

Every test runs the real CLI in a subprocess (real signals, real pipes)."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.io import lock
from tests.conftest import CLEAN_ENV, run_cli

T0 = 1_700_000_000_000_000_000


def big_lp(path: Path, lines: int) -> Path:
    with path.open("w") as out:
        for i in range(lines):
            out.write(f"cpu,host=h{i % 50} v={i}i {T0 + i * 1000}\n")
    return path


def tsadmin(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tsadmin", "--data-dir", str(data_dir), *args]


def wait_for_writer(db_dir: Path, pid: int, seconds: float = 60) -> None:
    """Until process ``pid`` holds the writer lock of ``db_dir``."""
    deadline = time.monotonic() + seconds
    while lock.holder_pid(db_dir) != pid:
        assert time.monotonic() < deadline, f"process {pid} never took the writer lock"
        time.sleep(0.01)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_an_ingest_and_says_what_was_committed(
    data_dir: Path, tmp_path: Path, signum: int, code: int
) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    source = big_lp(tmp_path / "big.lp", 1_500_000)
    # started the way a script's background job is: SIGINT ignored on entry
    child = subprocess.Popen(
        tsadmin(data_dir, "ingest", "lp", "m", str(source), "--batch-rows", "20000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=CLEAN_ENV,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    wait_for_writer(data_dir / "m", child.pid)
    wal = data_dir / "m" / "wal" / "current.wal"
    deadline = time.monotonic() + 60
    # Until several batches are in the WAL: commits run one after another, so a batch in the
    # WAL means the one before it was acknowledged (the last one may still be syncing).
    while wal.stat().st_size < 1 << 20:
        assert time.monotonic() < deadline and child.poll() is None, "no batch was committed"
        time.sleep(0.01)
    assert child.poll() is None, "the ingest finished before the signal: nothing tested"
    child.send_signal(signum)
    _, err = child.communicate(timeout=60)
    assert child.returncode == code, err
    assert "rows committed before it" in err and "Traceback" not in err
    committed = int(err.split(" rows committed")[0].split("(")[-1].replace(",", ""))
    rows = run_cli(data_dir, "--format", "json", "db", "checksum", "m").json()["rows"]
    assert rows >= committed > 0
    assert not [p for p in data_dir.rglob("*") if ".tmp" in p.name or "crashsim" in p.name]


def test_a_terminated_backup_leaves_no_staging(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    source = big_lp(tmp_path / "big.lp", 600_000)
    assert run_cli(data_dir, "ingest", "lp", "m", str(source)).code == 0
    store, gate = tmp_path / "store", tmp_path / "gate"
    gate.mkdir()
    child = subprocess.Popen(  # held with its archive written, just before publishing it
        tsadmin(data_dir, "backup", "create", "m", "--to", str(store)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**CLEAN_ENV, "TSADMIN_FAULTS": f"gate={gate};pause@backup.before_rename"},
    )
    deadline = time.monotonic() + 120
    while not (gate / "backup.before_rename.reached").exists():
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.01)
    assert any(store.iterdir())  # the staging directory, full: what must not be left
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 143 and "terminated" in err, err
    assert [p.name for p in store.iterdir()] == []


def test_a_closed_pipe_ends_quietly(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", str(big_lp(tmp_path / "s.lp", 50_000))).code == 0
    for fmt in ("table", "json", "csv"):
        done = subprocess.run(
            [
                "bash",
                "-c",
                "set -o pipefail; "
                + " ".join(tsadmin(data_dir, "--format", fmt, "select", "m", "cpu"))
                + " | head -1",
            ],
            capture_output=True,
            text=True,
            env=CLEAN_ENV,
        )
        assert done.returncode in (0, 141), (fmt, done.returncode, done.stderr)
        assert done.stderr == "", done.stderr
        assert len(done.stdout.splitlines()) == 1


def test_global_options_anywhere_and_from_the_environment(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    after = subprocess.run(
        [
            sys.executable,
            "-m",
            "tsadmin",
            "db",
            "list",
            "--format",
            "json",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
    )
    assert after.returncode == 0 and json.loads(after.stdout)[0]["name"] == "m"
    env = {**CLEAN_ENV, "TSADMIN_FORMAT": "json", "TSADMIN_DATA_DIR": str(data_dir)}
    from_env = subprocess.run(
        [sys.executable, "-m", "tsadmin", "db", "list"], capture_output=True, text=True, env=env
    )
    assert json.loads(from_env.stdout)[0]["name"] == "m"


def test_a_missing_data_dir_is_an_error_but_for_db_create(tmp_path: Path) -> None:
    typo = tmp_path / "tsdata-typo"
    for args in (("db", "list"), ("db", "show", "m"), ("checkpoint", "--all")):
        result = run_cli(tmp_path, "--data-dir", str(typo), *args)
        assert result.code == 1 and "does not exist" in result.err, (args, result)
        assert not typo.exists()
    assert run_cli(tmp_path, "--data-dir", str(typo), "db", "create", "m").code == 0


def test_usage_errors_are_one_line_and_exit_2(data_dir: Path) -> None:
    for args in (("db", "create"), ("db", "nosuch"), ("select",), ("db", "list", "--bogus")):
        result = run_cli(data_dir, *args)
        assert result.code == 2, (args, result)
        lines = result.err.strip().splitlines()
        assert lines[0].startswith("Error: ") and len(lines) <= 2, result.err


def test_exit_codes_for_missing_things_and_bad_data(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", str(tmp_path / "nope.lp")).code == 1
    assert run_cli(data_dir, "restore", str(tmp_path / "no-archive")).code == 1
    assert run_cli(data_dir, "backup", "verify", str(tmp_path / "no-archive")).code == 1
    csv = tmp_path / "ok.csv"
    csv.write_text("ts,a,b\n1,2,3\n")
    no_ts = run_cli(data_dir, "ingest", "csv", "m", str(csv), "--table", "t", "--ts-column", "x")
    no_tag = run_cli(data_dir, "ingest", "csv", "m", str(csv), "--table", "t", "--tags", "x")
    assert no_ts.code == no_tag.code == 6
    bad = run_cli(data_dir, "ingest", "lp", "m", "-", stdin=f"cpu,time=x v=1 {T0}\n")
    assert bad.code == 6, bad


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("dup.csv", b"ts,a,a\n1,2,3\n"),
        ("plain.gz", b"cpu v=1 1\n"),
        ("cut.gz", gzip.compress(b"".join(b"cpu v=%d %d\n" % (i, i) for i in range(20000)))[:900]),
        ("cut.zst", b"\x28\xb5\x2f\xfd" + b"\x00" * 20),
    ],
)
def test_damaged_or_odd_input_is_bad_input_not_an_internal_error(
    data_dir: Path, tmp_path: Path, name: str, content: bytes
) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    path = tmp_path / name
    path.write_bytes(content)
    kind = "csv" if name.endswith(".csv") else "lp"
    extra = ["--table", "t"] if kind == "csv" else []
    result = run_cli(data_dir, "ingest", kind, "m", str(path), *extra)
    assert result.code == 6, result
    assert "internal error" not in result.err and "Aborted" not in result.err
    assert name in result.err


def test_backup_to_a_file_and_two_backups_in_one_second(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=f"cpu v=1 {T0}\n").code == 0
    afile = tmp_path / "file"
    afile.write_text("x")
    to_file = run_cli(data_dir, "backup", "create", "m", "--to", str(afile))
    assert to_file.code == 2 and "is a file" in to_file.err
    store = tmp_path / "store"
    children = [
        subprocess.Popen(
            tsadmin(data_dir, "backup", "create", "m", "--to", str(store)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=CLEAN_ENV,
        )
        for _ in range(3)
    ]
    codes = [c.wait(timeout=60) for c in children]
    assert codes == [0, 0, 0], [c.stderr.read() for c in children if c.stderr]
    assert len([p for p in store.iterdir() if not p.name.startswith(".")]) == 3


def test_db_list_flags_a_damaged_database_and_lists_the_others(data_dir: Path) -> None:
    for name in ("a", "b", "c"):
        assert run_cli(data_dir, "db", "create", name).code == 0
    (data_dir / "b" / "manifest.json").write_text("{not json")
    listed = run_cli(data_dir, "--format", "json", "db", "list").json()
    assert [d["name"] for d in listed] == ["a", "b", "c"]
    assert "error" in listed[1] and "error" not in listed[0]


def test_checkpoint_all_skips_a_locked_database_and_reports_each(data_dir: Path) -> None:
    for name in ("a", "b"):
        assert run_cli(data_dir, "db", "create", name).code == 0
    holder = subprocess.Popen(
        tsadmin(data_dir, "ingest", "lp", "a", "-"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CLEAN_ENV,
    )
    try:
        wait_for_writer(data_dir / "a", holder.pid)
        result = run_cli(data_dir, "--format", "json", "checkpoint", "--all")
        assert result.code == 4, result
        status = {r["database"]: r["status"] for r in result.json()}
        assert status == {"a": "failed", "b": "ok"}
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_floats_are_printed_in_full_and_json_is_strict(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    csv = "ts,v\n1,16777216000.5\n2,-inf\n3,inf\n"
    assert run_cli(data_dir, "ingest", "csv", "m", "-", "--table", "t", stdin=csv).code == 0
    table = run_cli(data_dir, "select", "m", "t").out
    assert "16777216000.5" in table
    text = run_cli(data_dir, "--format", "json", "select", "m", "t").out
    values = [r["v"] for r in json.loads(text, parse_constant=lambda c: pytest.fail(c))]
    assert values == [16777216000.5, "-Infinity", "Infinity"]


def _read_only_mount(tmp_path: Path) -> Path | None:
    if os.geteuid() != 0:
        return None
    target = tmp_path / "ro"
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target)]).returncode != 0:
        return None
    return target


def test_every_write_command_on_a_read_only_file_system_says_so(tmp_path: Path) -> None:
    mount = _read_only_mount(tmp_path)
    if mount is None:
        print("skipped: needs root and a tmpfs mount to make a read-only file system")
        pytest.skip("needs root to mount a read-only tmpfs")
    try:
        data = mount / "data"
        assert run_cli(tmp_path, "--data-dir", str(data), "db", "create", "m").code == 0
        assert subprocess.run(["mount", "-o", "remount,ro", str(mount)]).returncode == 0
        for args in (
            ("ingest", "lp", "m", "-"),
            ("config", "set", "m", "wal_level", "flush"),
            ("checkpoint", "m"),
            ("db", "create", "n"),
            ("db", "drop", "m", "--yes"),
        ):
            result = run_cli(tmp_path, "--data-dir", str(data), *args, stdin=f"cpu v=1 {T0}\n")
            assert result.code == 1, (args, result)
            assert "Read-only file system" in result.err and "internal" not in result.err
        for args in (("db", "list"), ("db", "show", "m"), ("db", "verify", "m")):
            assert run_cli(tmp_path, "--data-dir", str(data), *args).code == 0, args
    finally:
        subprocess.run(["umount", str(mount)])


def test_the_progress_bar_of_a_file_ingest_moves(data_dir: Path, tmp_path: Path) -> None:
    """On a terminal (a pty for stderr), the bar counts bytes read from the file on disk,
    compressed or not, and moves during the run."""
    import pty
    import re

    assert run_cli(data_dir, "db", "create", "m").code == 0
    plain = big_lp(tmp_path / "big.lp", 250_000)  # a second or two of ingest: several readings
    packed = tmp_path / "big.lp.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    for source in (plain, packed):
        leader, follower = pty.openpty()
        child = subprocess.Popen(
            tsadmin(data_dir, "ingest", "lp", "m", str(source)),
            stdout=subprocess.DEVNULL,
            stderr=follower,
            env={**CLEAN_ENV, "TERM": "xterm"},
        )
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        assert child.wait(timeout=120) == 0
        os.close(leader)
        text = seen.decode(errors="replace")
        readings = re.findall(r"([0-9.]+)/([0-9.]+) MB", text)
        done = sorted({float(a) for a, _ in readings})
        assert len(done) >= 3, text[-2000:]  # it moved through several readings
        assert all(float(a) <= float(b) + 0.05 for a, b in readings), readings


def test_config_set_on_a_full_disk(data_dir: Path) -> None:
    assert run_cli(data_dir, "db", "create", "m").code == 0
    refused = run_cli(
        data_dir,
        "config",
        "set",
        "m",
        "wal_fsync_period",
        "250",
        env={"TSADMIN_FAULTS": "enospc@wal.append"},
    )
    assert refused.code == 1 and "no space" in refused.err, refused
    assert run_cli(data_dir, "config", "get", "m", "wal_fsync_period").out.strip() == "1000"
    # the change logged, only the checkpoint at close out of space: done, with a warning
    late = run_cli(
        data_dir,
        "--format",
        "json",
        "config",
        "set",
        "m",
        "wal_fsync_period",
        "250",
        env={"TSADMIN_FAULTS": "enospc@manifest.write"},
    )
    assert late.code == 0 and "warning" in late.err and late.json()["new"] == 250, late
    assert run_cli(data_dir, "config", "get", "m", "wal_fsync_period").out.strip() == "250"


def test_a_reader_probing_the_lock_never_fails_a_starting_writer(data_dir: Path) -> None:
    import threading

    from engine import Database
    from engine.io import lock
    from tests.conftest import new_db

    db_dir = new_db(data_dir, "m")
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            lock.holder_pid(db_dir)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(200):
            Database.open(db_dir, "m", background=False).close()
    finally:
        stop.set()
        prober.join()


def test_a_failed_background_checkpoint_is_reported_by_the_next_write(data_dir: Path) -> None:
    import pyarrow as pa

    from engine import Batch, Database, DiskFull
    from engine.io.fileio import IO
    from tests.conftest import new_db

    db_dir = new_db(data_dir, "m", checkpoint_interval="1s")
    db = Database.open(db_dir, "m")
    rows = pa.table({"ts": pa.array([T0], pa.int64()), "v": [1.0]})
    try:
        db.write([Batch("cpu", rows, [])])
        IO.faults.add("enospc@segment.write")
        deadline = time.monotonic() + 20
        while db.background_error is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert db.background_error is not None, "the interval checkpoint never ran"
        with pytest.raises(DiskFull, match="background"):
            db.write([Batch("cpu", rows, [])])
    finally:
        IO.faults.clear()
        with pytest.raises(DiskFull, match="background"):
            db.close()
