"""The state an open database's parts share, and the primitives of its log.

:class:`Core` is what the write path (``database.py``), checkpoints
(``checkpointing.py``), background maintenance (``maintenance.py``), the catalog,
settings and replica changes (``catalog.py``, ``configure.py``), a standby's apply
(``standbyapply.py``), promotion (``promotion.py``) and restore installs
(``install.py``) work on: the manifest, the catalog, the memtables, the WAL writer
and the locks. Each part takes the core it works on; none reaches into another.

Lock order, the one order every thread takes them in (a thread may skip any, never
take an earlier one while holding a later one):

1. ``ckpt_lock``: checkpoints, compactions, restores of tables;
2. ``write_lock``: the WAL append, the memtable, the catalog, ``wal``;
3. the group-commit sync token (``GroupCommit``): one fsync at a time.

The holder of the sync token fsyncs the WAL file it reads from ``wal`` without the
write lock; ``wal`` is only ever replaced while the rotating thread holds both the
write lock and the sync token (:meth:`GroupCommit.exclusive`), so a leader never
sees a closed file.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from engine.arrowmods import pa
from engine.db import replicastate as replication_state
from engine.db import shipping
from engine.db.reads import View, count_overwrites
from engine.db.recovery import ReplayState
from engine.db.replicastate import fenced_refusal
from engine.errors import EngineError, InvalidArgument, Remedy, StorageError, WritesRefused
from engine.io.lock import WriterLock
from engine.log import wal
from engine.log.groupcommit import GroupCommit
from engine.settings import Settings, WalLevel
from engine.storage.deletes import DeleteSpec
from engine.storage.manifest import Manifest, TableEntry
from engine.storage.memtable import Memtable
from engine.storage.schema import TableSchema


class Core:
    """One open database's shared state (see the module docstring for its locks)."""

    def __init__(
        self, db_dir: Path, name: str, state: ReplayState, *, writable: bool, role: str
    ) -> None:
        self.dir = db_dir
        self.name = name
        self.writable = writable
        self.role = role  # "primary", or "standby": applies shipped segments only
        self.load(state)
        self.last_commit_ns = state.last_commit_ns
        self.immutables: list[Memtable] = []  # frozen memtables a checkpoint is writing
        self.next_txn = state.next_txn
        self.replication: shipping.Shipping | None = None
        self.write_lock = threading.RLock()
        self.ckpt_lock = threading.Lock()
        self.commit = GroupCommit(state.last_lsn)
        self.wal: wal.WalWriter | None = None
        self.lock: WriterLock | None = None
        self.broken: str | None = None  # why writes are refused (a failed fsync)
        self.closed = False
        self.background = False  # maintenance threads run (else writes checkpoint inline)
        self.wake = threading.Event()  # asks the maintenance thread to look now
        self.background_error: EngineError | None = None

    def load(self, state: ReplayState) -> None:
        """Take what a replay rebuilt (at open, and a reader's reload)."""
        self.manifest: Manifest = state.manifest
        self.catalog: dict[str, TableSchema] = state.catalog
        self.settings: Settings = state.settings
        self.memtable: Memtable = state.memtable
        self.hidden: set[str] = set(state.hidden_tables)
        self.deletes: list[DeleteSpec] = list(state.deletes)
        self.last_lsn: int = state.last_lsn
        self.replayed_committed_lsn: int = state.committed_lsn

    @property
    def memtables(self) -> list[Memtable]:
        return [self.memtable, *self.immutables]

    @property
    def pending_bytes(self) -> int:
        """Bytes of committed rows not yet in segments (the memtables, frozen ones too)."""
        return sum(m.nbytes for m in self.memtables)

    @property
    def committed_lsn(self) -> int:
        """The last LSN that ends a transaction (a writer's appends always end one)."""
        return self.last_lsn if self.writable else self.replayed_committed_lsn

    def view(self) -> View:
        """What a reader sees now: the manifest, the catalog and the memtables as they are."""
        with self.write_lock:
            return View(
                manifest=self.manifest,
                catalog={t: s.copy() for t, s in self.catalog.items()},
                settings=self.settings,
                memtables=[*self.immutables, self.memtable.copy()],
                hidden_tables=frozenset(self.hidden),
                last_lsn=self.last_lsn,
                committed_lsn=self.committed_lsn,
                deletes=tuple(self.deletes),
            )

    @property
    def fenced(self) -> str | None:
        return self.replication.fenced if self.replication is not None else None

    def overwrites(
        self, tables: list[tuple[str, pa.Table]], changed: dict[str, TableSchema]
    ) -> int:
        """Rows of ``tables`` (name and rows, as one transaction writes them) whose key
        is already stored, or written earlier in the transaction: the ingest report's
        figure. Counted before the transaction's rows join the memtable and its schema
        changes (``changed``) the catalog."""
        earlier = Memtable()  # the transaction's batches before this one
        count = 0
        for table, rows in tables:
            entry = self.manifest.tables.get(table)
            stored = entry.segments if entry is not None and table not in self.hidden else []
            count += count_overwrites(
                self.dir,
                table,
                rows,
                (changed.get(table) or self.catalog[table]).tags,
                [*self.memtables, earlier],
                stored,
                self.deletes,
                self.settings.precision,
            )
            earlier.add(table, rows)
        return count

    def syncs_each_commit(self) -> bool:
        """The wal_level's promise needs an fsync before this commit is acknowledged."""
        settings = self.settings
        level = settings.wal_level
        if level in (WalLevel.SYNC, WalLevel.BYRL):
            return True
        if level is not WalLevel.FLUSH:
            return False
        # The flusher thread may be starved of CPU; a writer that finds the last fsync a
        # whole period old syncs before it acknowledges, so under load the promise "all
        # but the last period" holds without relying on that thread's timing.
        period = settings.wal_fsync_period_ms / 1000
        return period == 0 or time.monotonic() - self.commit.last_fsync_at >= period

    # -- the log ---------------------------------------------------------------------------
    def wal_writer(self, path: Path, start_lsn: int, *, create: bool) -> wal.WalWriter:
        identity = self.manifest
        return wal.WalWriter(
            path, self.name, start_lsn, create=create, uuid=identity.uuid, epoch=identity.epoch
        )

    def append(self, records: bytes) -> None:
        assert self.wal is not None
        self.wal.append(records)  # DiskFull leaves the file as it was: nothing changes

    def wait_durable(self, lsn: int) -> None:
        try:
            self.commit.wait_durable(lsn, lambda: self.last_lsn, self._fsync_wal)
        except EngineError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: never retry.
            self.broken = f"WAL fsync failed: {exc}"
            raise

    def _fsync_wal(self) -> None:
        # Called with the sync token held: taking the write lock here would invert the
        # lock order (a checkpoint holds the write lock while it waits for the token).
        current = self.wal
        assert current is not None
        current.fsync()

    def log_ddl(self, change: dict[str, Any]) -> int:
        """Log a catalog or settings change, durably, or not at all."""
        return self.log_standalone(wal.RecordType.DDL, wal.encode_ddl(change))

    def log_standalone(self, rtype: wal.RecordType, payload: bytes) -> int:
        """Append an auto-committed record and fsync it, the write lock held (the caller
        holds it too, to apply the change before anyone else writes): if the fsync fails
        the record (the last one) is cut off again and a reopen cannot apply a change
        that was reported as failed."""
        with self.write_lock:
            self.check_writable()
            assert self.wal is not None
            lsn, start = self.last_lsn + 1, self.wal.size
            self.append(wal.encode_record(lsn, 0, rtype, payload))
            self.last_lsn = lsn
            try:
                self.wait_durable(lsn)
            except EngineError:
                self.wal.cut_back(start)
                self.last_lsn = lsn - 1
                raise
        return lsn

    # -- what may happen now -----------------------------------------------------------------
    def check_writable(self) -> None:
        """Refuse a change of data, schema or settings: read-only, closed, broken, a
        standby (it takes its changes from its primary only) or fenced."""
        self.check_open()
        if self.role == "standby":
            standby = replication_state.load_standby(self.dir)
            if standby is not None:
                raise standby_refusal(self.name, standby)
        if self.fenced:
            raise fenced_refusal(self.fenced, self.name)

    def check_open(self) -> None:
        """Refuse any file change (a checkpoint too): read-only, closed or broken."""
        if not self.writable:
            raise InvalidArgument(f"database {self.name} is open read-only")
        if self.closed:
            raise InvalidArgument(f"database {self.name} is closed")
        if self.broken is not None:
            raise StorageError(
                f"database {self.name} refuses writes: {self.broken}",
                hint="close and reopen it; recovery replays what was acknowledged",
            )

    def background_failure(self) -> EngineError | None:
        if self.background_error is not None:
            return type(self.background_error)(
                f"a background checkpoint or flush failed: {self.background_error.message}",
                hint=self.background_error.hint,
            )
        if self.replication is not None and self.replication.bug is not None:
            return self.replication.bug
        return None

    def raise_background_failure(self) -> None:
        """A background checkpoint, compaction or WAL flush that failed is reported by the
        next write (and by close): sticky until the database is reopened."""
        failure = self.background_failure()
        if failure is not None:
            raise type(failure)(
                f"database {self.name}: {failure.message}",
                hint=failure.hint or "close and reopen it; recovery replays what was acknowledged",
            )


def copy_manifest(manifest: Manifest) -> Manifest:
    return Manifest(
        database=manifest.database,
        settings=manifest.settings,
        checkpoint_lsn=manifest.checkpoint_lsn,
        next_txn=manifest.next_txn,
        next_segment=manifest.next_segment,
        tables={
            n: TableEntry(e.schema.copy(), list(e.segments)) for n, e in manifest.tables.items()
        },
        uuid=manifest.uuid,
        epoch=manifest.epoch,
    )


def standby_refusal(name: str, standby: replication_state.StandbyState) -> WritesRefused:
    return WritesRefused(
        f"database {name} is a standby of {standby.source} (applied up to LSN "
        f"{standby.applied_lsn}): it refuses writes until promoted",
        hint="read from it freely; to make it the primary, promote it",
    ).advise(Remedy.PROMOTE, name)
