"""Replication inside a writing database: background shipping, byrl, holding WAL.

Every writer of a database with replica stores ships in the background, as
commits happen: one thread wakes on each commit, waits ``SHIP_GATHER`` for the
commits right behind it (so one upload carries a group of them), and ships;
with nothing committed it still looks every ``interval`` seconds (a store that
failed is retried, a newer epoch noticed). It ships once more on a clean close. Only one
process ships a database at a time: the one holding ``replication/SHIP.lock``
(``flock``); a writer that finds ``tsadmin replicate`` holding it leaves the
shipping to it and, at byrl, waits for the position that process records.

``byrl``: :meth:`Replication.wait_confirmed` returns once every replica store
holds the given LSN. Writers waiting together share one upload, the way they
share an fsync: the first becomes the leader and ships everything committed so
far; the others wait for its result. A store that does not confirm within
``replica_timeout`` fails the write with :class:`ReplicaTimeout`.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.db.core import standby_refusal
from engine.db.database import Database
from engine.db.replicastate import (
    DIR,
    SHIP_LOCK,
    ShipState,
    fenced_refusal,
    load_ship_state,
)
from engine.errors import (
    BackgroundBug,
    EngineError,
    ReplicaTimeout,
    StoreUnavailable,
    WritesRefused,
)
from engine.io.fileio import IO
from engine.log import wal
from engine.replication import layout
from engine.replication.shipper import Shipper, ShipReport
from engine.replication.walsource import WalSource
from engine.settings import Settings, tunable
from engine.stores import open_store


def default_interval() -> float:
    """Seconds between shipping rounds when nothing is committed."""
    return tunable("TSADMIN_SHIP_INTERVAL", 1.0)


# How long the shipper waits after a commit for the ones right behind it.
SHIP_GATHER = 0.05
RETRY_PAUSE = 0.1


def held() -> bool:
    """Tests: no background shipping at all (a clean close, byrl and replicate still ship)."""
    return os.environ.get("TSADMIN_SHIP_HOLD") == "1"


def upkeep_interval() -> float:
    """How often a shipper looks whether a snapshot is due or the store needs pruning."""
    return tunable("TSADMIN_UPKEEP_INTERVAL", 10.0)


def take_ship_lock(db_dir: Path) -> int | None:
    """The shipping lock's descriptor, or None if another process ships this database."""
    IO.mkdirs(db_dir / DIR)
    fd = os.open(db_dir / DIR / SHIP_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def release_ship_lock(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass(frozen=True)
class ReplicaProgress:
    url: str
    shipped_lsn: int
    shipped_commit_ns: int
    reseeds: int
    error: str | None


class Replication:
    def __init__(
        self,
        db_dir: Path,
        database: str,
        urls: tuple[str, ...],
        identity: Callable[[], tuple[str, int]],
        interval: float | None = None,
        settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.db_dir = db_dir
        self.settings = settings or (lambda: Settings())
        self.database = database
        self.urls = urls
        self.identity = identity
        self.interval = default_interval() if interval is None else interval
        self.fenced: str | None = None
        self.bug: BackgroundBug | None = None  # an unexpected exception in shipping or upkeep
        self.errors: dict[str, str] = {}
        self.notices: list[str] = []
        self._told = 0  # notices handed out by take_notices
        self.reseeds: dict[str, int] = {}
        self.reports: dict[str, ShipReport] = {}
        self._source = WalSource(db_dir)
        self._shippers: dict[str, Shipper] = {}
        self._lock_fd: int | None = None
        self._cond = threading.Condition()
        self._confirmed = 0
        self._stop = threading.Event()
        self._committed = threading.Event()
        self._round_wanted = threading.Event()
        self._round_worker: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self._upkeep: threading.Thread | None = None
        self._upkept_at = 0.0
        self._ship_lock = threading.Lock()  # one round at a time: background, byrl, close

    # -- life cycle ------------------------------------------------------------------
    def start(self, background: bool) -> None:
        self.load_fence()
        self._lock_fd = take_ship_lock(self.db_dir)
        self._check_claims()
        if background and self._lock_fd is not None and not held():
            self._thread = threading.Thread(target=self._loop, name="tsadmin-shipper", daemon=True)
            self._thread.start()
        if background and self._lock_fd is not None:
            self._upkeep = threading.Thread(
                target=self._upkeep_loop, name="tsadmin-store-upkeep", daemon=True
            )
            self._upkeep.start()

    @property
    def owner(self) -> bool:
        return self._lock_fd is not None

    def hold_ship_lock(self, fd: int) -> None:
        """Ship as the owner of the lock ``fd`` (taken by the caller, who waited for it)."""
        self._lock_fd = fd

    def let_go_of_ship_lock(self) -> None:
        release_ship_lock(self._lock_fd)
        self._lock_fd = None

    def close(self, final: bool) -> None:
        self._stop.set()
        self._committed.set()
        self._round_wanted.set()
        for thread in (self._thread, self._upkeep):
            if thread is not None:
                thread.join()
        if self._round_worker is not None:  # a round stuck on a hanging store is left
            self._round_worker.join(timeout=RETRY_PAUSE * 10)
        try:
            if final and self.owner and self.fenced is None:
                self.ship_all()
        finally:
            with self._ship_lock:
                for shipper in self._shippers.values():
                    shipper.flush_state()
            self.let_go_of_ship_lock()

    def notify(self) -> None:
        """A commit is durable: ship it soon."""
        self._committed.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._committed.wait(self.interval)
            self._committed.clear()
            if self._stop.wait(min(SHIP_GATHER, self.interval)):
                return
            self.ship_all()

    def _upkeep_loop(self) -> None:
        while not self._stop.wait(upkeep_interval()):
            self.keep_stores()

    def keep_stores(self, *, now: float | None = None) -> list[str]:
        """Periodic snapshots and the point-in-time window in every store
        (:mod:`.storekeeping`); what was done, as notices. Beside shipping, never
        holding it up; a failure is kept per store like a shipping error."""
        self._upkept_at = time.monotonic()
        uuid, epoch = self.identity()
        done = []
        for url in self.urls:
            try:
                said = self.shipper(url).upkeep(uuid, epoch, self.settings(), now=now)
            except EngineError as exc:
                self.errors[url] = f"store upkeep: {exc.message}"
                continue
            except Exception as exc:  # a bug: as in a shipping round
                self.bug = self.bug or BackgroundBug.of("store upkeep", exc)
                self.errors[url] = self.bug.message
                continue
            done += [f"replica {url}: {item}" for item in said]
        self.notices += done
        return done

    def upkeep_due(self) -> bool:
        return time.monotonic() - self._upkept_at >= upkeep_interval()

    # -- shipping ---------------------------------------------------------------------
    def ship_all(self) -> dict[str, ShipReport]:
        """One round to every replica; failures are kept per store (status shows them)."""
        with self._ship_lock:
            return self._ship_round()

    def _ship_round(self) -> dict[str, ShipReport]:
        uuid, epoch = self.identity()
        confirmed = None
        for url in self.urls:
            try:
                report = self.shipper(url).ship(uuid, epoch)
            except WritesRefused as exc:
                self.fenced = exc.message
                self.errors[url] = exc.message
                confirmed = -1
                continue
            except EngineError as exc:
                self.errors[url] = exc.message
                confirmed = -1
                continue
            except Exception as exc:  # a bug: said by status and the next write, never lost
                self.bug = self.bug or BackgroundBug.of("shipping", exc)
                self.errors[url] = self.bug.message
                confirmed = -1
                continue
            self.errors.pop(url, None)
            self.reports[url] = report
            if report.reseeded:
                self.reseeds[url] = self.reseeds.get(url, 0) + 1
                self.notices.append(
                    f"replica {url} was reseeded from snapshot {report.snapshot} "
                    f"({report.reseeded})"
                )
            if confirmed != -1:
                confirmed = (
                    report.shipped_lsn if confirmed is None else min(confirmed, report.shipped_lsn)
                )
        if confirmed is not None and confirmed >= 0:
            with self._cond:
                self._confirmed = max(self._confirmed, confirmed)
        return self.reports

    def take_notices(self) -> list[str]:
        """Notices (reseeds, WAL dropped past the hold limits) not taken before."""
        fresh = self.notices[self._told :]
        self._told = len(self.notices)
        return fresh

    def progress(self) -> list[ReplicaProgress]:
        """Per store: what it confirmed, its reseeds and its last error (for metrics)."""
        out = []
        for url in self.urls:
            shipper = self._shippers.get(url)
            state = shipper.state if shipper is not None else load_ship_state(self.db_dir, url)
            out.append(
                ReplicaProgress(
                    url=url,
                    shipped_lsn=state.shipped_lsn if state else 0,
                    shipped_commit_ns=state.shipped_commit_ns if state else 0,
                    reseeds=self.reseeds.get(url, 0),
                    error=self.errors.get(url),
                )
            )
        return out

    def shipper(self, url: str) -> Shipper:
        shipper = self._shippers.get(url)
        if shipper is None:
            shipper = self._shippers[url] = Shipper(self.db_dir, self.database, url, self._source)
        return shipper

    def wait_confirmed(self, lsn: int, timeout: float) -> None:
        """Block until every replica store holds ``lsn`` (byrl); see the module docstring.
        Rounds run on one worker thread: writers waiting together share a round, and a
        store that hangs holds up that one thread, never one per write."""
        deadline = time.monotonic() + timeout
        if not self.owner:
            self._poll_confirmed(lsn, deadline)
            return
        with self._cond:
            self._start_round_worker()
            while self._confirmed < lsn:
                if self.fenced:
                    raise fenced_refusal(self.fenced, self.database)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._timeout(lsn, timeout)
                self._round_wanted.set()
                self._cond.wait(remaining)

    def _start_round_worker(self) -> None:
        if self._round_worker is None:
            self._round_worker = threading.Thread(
                target=self._run_rounds, name="tsadmin-byrl-ship", daemon=True
            )
            self._round_worker.start()

    def _run_rounds(self) -> None:
        while True:
            self._round_wanted.wait()
            if self._stop.is_set():
                return
            self._round_wanted.clear()
            self.ship_all()
            with self._cond:
                self._cond.notify_all()
            if self.errors:  # a failing store: do not hammer it while writers wait
                self._stop.wait(RETRY_PAUSE)

    def _poll_confirmed(self, lsn: int, deadline: float) -> None:
        """Another process ships (it holds the ship lock): its progress shows only in the
        ship-state files it writes, so this reads them until they reach ``lsn``."""
        while True:
            states = [load_ship_state(self.db_dir, url) for url in self.urls]
            if all(s is not None and s.shipped_lsn >= lsn for s in states):
                return
            if time.monotonic() >= deadline:
                raise self._timeout(lsn, 0)
            time.sleep(0.01)

    def _timeout(self, lsn: int, timeout: float) -> ReplicaTimeout:
        why = "; ".join(f"{u}: {e}" for u, e in self.errors.items()) or "no answer in time"
        return ReplicaTimeout(
            f"database {self.database}: the write (LSN {lsn}) is durable here but no replica "
            f"store confirmed it within {timeout:g}s ({why})",
            hint="check the replica store; the write will be shipped when it answers "
            "(wal_level byrl acknowledges only what a replica holds)",
        )

    # -- fencing ------------------------------------------------------------------------
    def load_fence(self) -> None:
        for url in self.urls:
            state = load_ship_state(self.db_dir, url)
            if state is not None and state.fenced:
                f = state.fenced
                self.fenced = (
                    f"database {self.database} is fenced: its standby was promoted to epoch "
                    f"{f['epoch']} at {f['claimed_at']} on {f['host']} (replica {url}); "
                    "writes here would be lost"
                )

    def _check_claims(self) -> None:
        """At open: a newer epoch (claimed, or a promotion begun) in any replica store
        fences this writer before its first write. A store that cannot be reached does
        not stop the writer (the shipper keeps trying, and status says so)."""
        _uuid, epoch = self.identity()
        for url in self.urls:
            try:
                epochs = layout.read_epochs(self.shipper(url).store, after_epoch=epoch)
            except StoreUnavailable as exc:
                self.errors[url] = exc.message
                continue
            try:
                self.shipper(url).check_fence(epochs, epoch, _state_of(self.db_dir, url))
            except WritesRefused as exc:
                self.fenced = exc.message


def _state_of(db_dir: Path, url: str) -> ShipState:
    return load_ship_state(db_dir, url) or ShipState(url)


def _wal_size(db_dir: Path) -> int:
    total = 0
    for path in wal.wal_files(db_dir / wal.WAL_DIR):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


def _until_written(db_dir: Path, interval: float, should_stop: Callable[[], bool]) -> None:
    """Wait until a writer appends to the WAL (a short poll of its size), at most
    ``interval`` seconds: the shipper alone ships as commits happen too."""
    size = _wal_size(db_dir)
    deadline = time.monotonic() + interval
    while time.monotonic() < deadline and not should_stop():
        time.sleep(min(SHIP_GATHER, interval))
        if _wal_size(db_dir) != size:
            return


def replicate(
    data_dir: Path,
    name: str,
    *,
    once: bool,
    interval: float | None = None,
    snapshot: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_error: Callable[[str, str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> dict[str, ShipReport]:
    """Run the shipper alone (no writer needed): one round (``once``), or every
    ``interval`` seconds until ``should_stop``, with a last round before returning.
    While a writer of the database ships it, ``once`` leaves it to the writer (an
    empty result) and the service waits to take over."""
    from engine.db.datadir import existing_database_dir
    from engine.db.replicastate import load_standby
    from engine.errors import InvalidArgument, Remedy
    from engine.storage import manifest as manifest_format

    db_dir = existing_database_dir(data_dir, name)
    standby = load_standby(db_dir)
    if standby is not None:
        raise standby_refusal(name, standby)
    settings = Database.open(db_dir, name, readonly=True).settings
    if not settings.replicas:
        raise InvalidArgument(
            f"database {name} has no replica store", hint="add a replica store first"
        ).advise(Remedy.ADD_REPLICA, name)
    if not manifest_format.load(db_dir).uuid:
        raise InvalidArgument(
            f"database {name} has no identity yet (made before 0.3)",
            hint="open it for writing once (a checkpoint will do) to give it one",
        ).advise(Remedy.OPEN_FOR_WRITING, name)

    def identity() -> tuple[str, int]:
        manifest = manifest_format.load(db_dir)
        return manifest.uuid, manifest.epoch

    def current_settings() -> Settings:
        return Database.open(db_dir, name, readonly=True).settings

    interval = default_interval() if interval is None else interval
    rep = Replication(db_dir, name, settings.replicas, identity, interval, current_settings)
    rep.load_fence()
    if rep.fenced:
        raise fenced_refusal(rep.fenced, name)
    while (fd := take_ship_lock(db_dir)) is None:
        if once or should_stop():
            return {}
        time.sleep(min(interval, 0.5))
    rep.hold_ship_lock(fd)
    try:
        while True:
            reports = rep.ship_all()
            if once or rep.upkeep_due():
                rep.keep_stores()
            for item in rep.take_notices():
                if on_note is not None:
                    on_note(item)
            if snapshot:
                for url, report in reports.items():
                    report.snapshot = report.snapshot or rep.shipper(url).snapshot()
                snapshot = False
            if rep.fenced:
                raise fenced_refusal(rep.fenced, name)
            if once and rep.errors:  # a cron job must not take a failed round for done
                raise StoreUnavailable(
                    "; ".join(f"{url}: {message}" for url, message in rep.errors.items()),
                    hint="the WAL is held until the store answers; run again then",
                )
            for url, message in rep.errors.items():
                if on_error is not None:
                    on_error(url, message)
            if once or should_stop():
                return reports
            _until_written(db_dir, interval, should_stop)
            if should_stop():
                return rep.ship_all()
    finally:
        rep.let_go_of_ship_lock()


def add_replica(db: Database, url: str) -> Settings:
    """Make the store ``url`` (if it is a new local directory) and check it holds no
    other database's log, then have ``db`` (open for writing) ship to it."""
    from engine.replication import layout

    if url not in db.settings.replicas:
        store = open_store(url)
        store.create()
        layout.require_database(store, layout.read_claims(store), db.identity[0])
    return db.add_replica(url)
