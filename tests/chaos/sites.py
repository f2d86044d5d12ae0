"""The real processes of a trial: ``tsadmin serve`` and its HTTP writers, piped
``ingest``, ``follow``, ``replicate`` and ``promote``, each a child process that the
trial may SIGKILL, SIGSTOP or let finish; and the setup done through the engine's API
(fast: no process start-up for what is not under test)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine import ops
from engine.db import datadir
from engine.settings import Settings, WalLevel
from tests.chaos.ledger import Ledger
from tests.conftest import CLEAN_ENV
from tests.servers import free_port

DB = "m"
SHIP_INTERVAL = 0.2  # seconds; the async window of a failover at sync is about this
FSYNC_PERIOD_MS = 200  # flush: what a power loss may take
TSADMIN = [sys.executable, "-m", "tsadmin"]
_SPAWNED: list[subprocess.Popen[bytes]] = []  # this trial's children, killed if it fails
_LOGS: dict[int, Path] = {}  # pid -> its stderr


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**CLEAN_ENV, "TSADMIN_SHIP_INTERVAL": str(SHIP_INTERVAL), **(extra or {})}


def create(data: Path, level: str, *, replica: str | None = None) -> None:
    """A database at ``level`` (byrl: with ``replica`` added first, as an operator must)."""
    settings = Settings(
        wal_level=WalLevel.SYNC if level == "byrl" else WalLevel[level.upper()],
        wal_fsync_period_ms=FSYNC_PERIOD_MS,
    )
    datadir.create_database(data, DB, settings)
    ops.config_set(data, DB, "replica_timeout", "3s")
    if replica is not None:
        ops.replica_change(data, DB, replica, add=True)
    if level == "byrl":
        ops.config_set(data, DB, "wal_level", "byrl")


def cli(
    data: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*TSADMIN, "--data-dir", str(data), *args],
        input=stdin,
        capture_output=True,
        env=environment(env),
        timeout=timeout,
    )


def spawn(
    data: Path, *args: str, env: dict[str, str] | None = None, stdin: bool = False
) -> subprocess.Popen[bytes]:
    # stderr to a file: a long-running service that logs must never block on a full pipe
    log = data.parent / f"{data.name}-{args[0]}-{len(_SPAWNED)}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*TSADMIN, "--data-dir", str(data), *args],
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            env=environment(env),
        )
    _SPAWNED.append(process)
    _LOGS[process.pid] = log
    return process


def finish(
    process: subprocess.Popen[bytes], timeout: float = 120, stdin: bytes | None = None
) -> tuple[int, str]:
    """Wait for ``process`` (feeding it ``stdin``); its exit code (``-9`` when killed, ``-999``
    when it had to be killed after ``timeout``) and the end of its stderr."""
    try:
        process.communicate(stdin, timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        kill(process)
        code = -999
    log = _LOGS.get(process.pid)
    said = log.read_bytes().decode(errors="replace")[-400:] if log and log.exists() else ""
    return code, said


def kill(process: subprocess.Popen[bytes]) -> float:
    """SIGKILL now; the moment it was sent."""
    moment = time.monotonic()
    if process.poll() is None:  # else it finished first: its exit code stays
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    process.wait()
    return moment


@dataclass
class Served:
    """``tsadmin serve`` on a free port, with HTTP writers posting unique points."""

    data: Path
    ledger: Ledger
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    stop_writing: threading.Event = field(default_factory=threading.Event)
    writers: list[threading.Thread] = field(default_factory=list)
    answers: dict[int, int] = field(default_factory=dict)  # status (0: no answer) -> count
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.port = free_port()
        self.process = spawn(self.data, "serve", "--bind", f"127.0.0.1:{self.port}", env=self.env)
        deadline = time.monotonic() + 60
        while self.status("GET", "/ping") != 204:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {finish(self.process)[1]}")
            time.sleep(0.02)

    def status(self, method: str, path: str, body: bytes | None = None) -> int:
        """The status of one request on a new connection (0: no HTTP answer)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body)
            response = connection.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException):
            return 0
        finally:
            connection.close()

    def write(self, writer: str, lines: int) -> int:
        keys, body = self.ledger.batch(writer, lines)
        answer = self.status("POST", f"/write?db={DB}", body)
        if answer == 204:
            self.ledger.ack(keys)
        with self._lock:
            self.answers[answer] = self.answers.get(answer, 0) + 1
        return answer

    def start_writers(self, count: int, lines: int) -> None:
        def loop(name: str) -> None:
            while not self.stop_writing.is_set():
                if (
                    self.write(name, lines) == 0
                    and self.process
                    and self.process.poll() is not None
                ):
                    return  # the server is gone

        for n in range(count):
            thread = threading.Thread(target=loop, args=(f"c{n}",), daemon=True)
            thread.start()
            self.writers.append(thread)

    def wait_first_ack(self) -> None:
        """Block until a write is acknowledged: a fault that lands before any would test
        nothing, and a loaded machine can take longer than the shortest moment to answer."""
        if not self.ledger.wait_acked(1, timeout=60):
            raise RuntimeError("serve acknowledged no write within 60 s")

    def join_writers(self) -> None:
        self.stop_writing.set()
        for thread in self.writers:
            thread.join(timeout=60)

    def kill(self) -> float:
        assert self.process is not None
        moment = kill(self.process)
        self.join_writers()
        return moment

    def pause(self, seconds: float) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        time.sleep(seconds)  # the fault itself: a process frozen this long
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> int:
        """SIGTERM: drain, checkpoint, ship; the exit code."""
        assert self.process is not None
        self.join_writers()
        self.process.send_signal(signal.SIGTERM)
        return finish(self.process)[0]


def ingest(
    data: Path, ledger: Ledger, writer: str, lines: int, *, env: dict[str, str] | None = None
) -> int:
    """One ``ingest lp`` of ``lines`` new points from a pipe; acknowledged on exit 0."""
    keys, body = ledger.batch(writer, lines)
    done = cli(data, "ingest", "lp", DB, "-", "--batch-rows", "500", env=env, stdin=body)
    if done.returncode == 0:
        ledger.ack(keys)
    return done.returncode


def wipe(site: Path) -> None:
    """The site is lost: its whole data directory."""
    import shutil

    shutil.rmtree(site, ignore_errors=True)
    os.makedirs(site, exist_ok=True)


def kill_strays() -> None:
    """SIGKILL every child a trial started and did not wait for (a trial that failed)."""
    while _SPAWNED:
        process = _SPAWNED.pop()
        if process.poll() is None:
            kill(process)
