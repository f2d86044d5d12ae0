"""The write endpoint's life: which databases it serves, how it starts and stops.

``engine.server.run.serve`` opens every database it serves for writing (holding their writer locks
for as long as it runs), listens, and on ``stop``:

1. stops accepting connections and answers no new request (503 while it drains);
2. lets every request in flight finish (each gets its answer);
3. commits whatever the batchers still hold, then closes each database: the
   shipper sends the log to its replicas, and a checkpoint leaves the WAL empty.

A database is served only by one process at a time (its writer lock). Binding
to anything but loopback requires a token: the endpoint writes data, and a
network-reachable one without credentials would take it from anyone.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from engine.db import maintenance
from engine.db import replicastate as replication_state
from engine.db.database import Database
from engine.db.datadir import create_database, database_dir, ensure_data_dir, list_databases
from engine.errors import EngineError, InvalidArgument, WritesRefused
from engine.names import validate_name
from engine.server import DEFAULT_BIND
from engine.server.batcher import WORKERS, Batcher
from engine.server.metrics import ServerStats
from engine.settings import Settings

DEFAULT_MAX_BODY = 25 << 20  # InfluxDB's max-body-size

Log = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ServeConfig:
    bind: str = DEFAULT_BIND
    databases: tuple[str, ...] = ()  # none named: every database of the data directory
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    memory_limit_bytes: int = 0  # 0: sized from the machine (default_memory_ceiling)
    log_interval_s: float = 60.0
    workers: int = WORKERS

    @property
    def ceiling(self) -> int:
        return self.memory_limit_bytes or default_memory_ceiling()


# The default memory ceiling: this share of the memory the process may use, never below
# one and a half times the checkpoint's memory trigger. With 16 clients sending 1,000-host
# batches a fixed 96 MiB answered 503 several times a run; a client that does not retry
# lost those batches.
MEMORY_SHARE = 8


@functools.cache
def default_memory_ceiling() -> int:
    """An eighth of the machine's memory (or of its cgroup's limit, when lower), at
    least 1.5x the checkpoint's memory trigger (96 MiB). Looked up once: every write
    request checks the ceiling."""
    return ceiling_for(_memory_available_to_us())


def ceiling_for(memory_bytes: int) -> int:
    floor = maintenance.MEMTABLE_MAX_BYTES * 3 // 2
    return max(floor, memory_bytes // MEMORY_SHARE)


def _memory_available_to_us() -> int:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            return min(physical, int(text))
    return physical


@dataclass
class Served:
    db: Database
    batcher: Batcher


def parse_bind(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (every address) to (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidArgument(
            f"invalid address {text!r}", hint="give host:port, e.g. 127.0.0.1:8086"
        )
    return host.strip("[]") or "0.0.0.0", int(port_text)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_exposure(config: ServeConfig) -> None:
    host, _ = parse_bind(config.bind)
    if config.token is None and not is_loopback(host):
        raise InvalidArgument(
            f"listening on {config.bind} would take writes from the network without a token",
            hint="give the server a token (clients send it as Authorization: Token T), "
            "or listen on 127.0.0.1",
            param="token",
        )
    if config.token is not None and not config.token.strip():
        raise InvalidArgument("the token is empty", param="token")


class InFlight:
    """The requests whose handlers are running, so that a stop can wait for their
    answers and then close every other connection at once."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if not self.count:
            self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Whether every handler ended within ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class WriteService:
    def __init__(self, data_dir: Path, config: ServeConfig, log: Log) -> None:
        self.data_dir = data_dir
        self.config = config
        self.log = log
        self.served: dict[str, Served] = {}
        self.not_served: dict[str, str] = {}  # known databases it refuses, and why
        self.stats = ServerStats()
        self.registry: CollectorRegistry = self.stats.registry(self.databases)
        self.stopping = False
        self.in_flight = InFlight()
        self._lock = threading.Lock()

    def databases(self) -> dict[str, Database]:
        return {name: s.db for name, s in self.served.items()}

    def open(self) -> None:
        ensure_data_dir(self.data_dir)  # serving an empty data dir waits for CREATE DATABASE
        names = list(self.config.databases) or list_databases(self.data_dir)
        try:
            for name in names:
                self._open(name, named=bool(self.config.databases))
        except BaseException:
            self.close()
            raise

    def _open(self, name: str, *, named: bool) -> None:
        standby = replication_state.load_standby(database_dir(self.data_dir, name))
        if standby is not None and not named:
            self.not_served[name] = (
                f"database {name} is a standby of {standby.source}: it takes writes only "
                "once promoted"
            )
            return
        db = Database.open(database_dir(self.data_dir, name), name)
        workers = self.config.workers
        self.served[name] = Served(
            db,
            Batcher(
                db,
                workers=workers,
                on_commit=lambda group: self.stats.commit(name, group),
            ),
        )

    def serves_any(self) -> bool:
        """Whether it serves the whole data directory (no databases were named), so
        ``CREATE DATABASE`` may add one."""
        return not self.config.databases

    def create_and_serve(self, name: str) -> None:
        """``CREATE DATABASE`` of a database it does not serve: made (default settings)
        if missing, then opened and served."""
        with self._lock:
            if name in self.served:
                return
            validate_name("database", name)
            if name not in list_databases(self.data_dir):
                create_database(self.data_dir, name, Settings())
            self._open(name, named=False)
            if name not in self.served:
                raise WritesRefused(self.not_served[name])
            self.log({"event": "created", "database": name})

    def checks(self) -> list[dict[str, Any]]:
        checks = []
        for name, served in sorted(self.served.items()):
            problem = served.db.problem
            checks.append(
                {
                    "name": name,
                    "status": "pass" if problem is None else "fail",
                    "message": problem or "ok",
                }
            )
        return checks

    def log_replication(self, name: str, db: Database) -> None:
        """A line per replication event (a reseed, WAL dropped past the hold limits)."""
        if db.replication is not None:
            for message in db.replication.take_notices():
                self.log({"event": "replication", "database": name, "message": message})

    def close(self) -> list[dict[str, Any]]:
        """Commit what the batchers hold, then close every database (ship, checkpoint)."""
        reports = []
        first_error: BaseException | None = None
        for name, served in list(self.served.items()):
            try:
                served.batcher.close()
                report = served.db.close()
                self.log_replication(name, served.db)
                reports.append(
                    {"database": name, "checkpoint_lsn": served.db.checkpoint_lsn}
                    | ({"rows_checkpointed": report.rows} if report is not None else {})
                )
            except EngineError as exc:
                served.db.abandon()
                first_error = first_error or exc
            del self.served[name]
        if first_error is not None:
            raise first_error
        return reports
