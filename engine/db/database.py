"""An open database: its lifecycle and the write path; reads go through
:mod:`engine.db.reads`.

One process at a time opens a database for writing (the writer lock); any number
open it read-only, which replays the WAL in memory without touching a file. Threads
of the writing process share the object: writes are serialised by the write lock
(append to the WAL, apply to the memtable) and fsyncs are shared through group
commit. The parts of an open database each live in a module of their own and work on
its shared :class:`~engine.db.core.Core` (whose docstring gives the lock order):
checkpoints and compaction (``checkpointing.py``), background threads
(``maintenance.py``), the catalog (``catalog.py``), settings and replica stores
(``configure.py``, ``replicas.py``), a standby's apply (``standbyapply.py``),
promotion (``promotion.py``) and restores (``install.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

from engine.arrowmods import pa
from engine.db import catalog, install, promotion, replicas, shipping, standbyapply
from engine.db import replicastate as replication_state
from engine.db.checkpoint import CheckpointReport, CompactionReport
from engine.db.checkpointing import Checkpoints
from engine.db.configure import Configure
from engine.db.core import Core, copy_manifest, standby_refusal
from engine.db.maintenance import Maintenance, remove_orphans
from engine.db.reads import ScanBounds, View, as_table, replay_consistently, scan_batches
from engine.db.recovery import RecoveryReport, ReplayState, replay
from engine.errors import EngineError, NotFound
from engine.io.lock import WriterLock
from engine.log import wal
from engine.log.encoding import encode_payloads
from engine.settings import Settings, WalLevel
from engine.storage import manifest as manifest_format
from engine.storage import retention
from engine.storage.deletes import DeleteSpec
from engine.storage.manifest import SegmentInfo
from engine.storage.rows import normalize_rows
from engine.storage.schema import TableSchema


@dataclass
class Batch:
    """Rows for one table: ``ts`` plus the named ``tags`` plus fields."""

    table: str
    rows: pa.Table
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CommitResult:
    txn: int
    lsn: int
    rows: int
    durable: bool
    overwritten: int = 0  # rows whose key (table, tags, ts) was already there, or earlier


class Database:
    def __init__(
        self, db_dir: Path, name: str, state: ReplayState, *, writable: bool, role: str = "primary"
    ) -> None:
        self.dir = db_dir
        self.name = name
        self.writable = writable
        self.recovery: RecoveryReport = state.report
        self._core = Core(db_dir, name, state, writable=writable, role=role)
        self._checkpoints = Checkpoints(self._core)
        self._maintenance = Maintenance(self._core, self._checkpoints)
        self._configure = Configure(self._core, self._checkpoints)

    # -- opening and closing -----------------------------------------------------
    @classmethod
    def open(
        cls,
        db_dir: Path,
        name: str,
        *,
        readonly: bool = False,
        background: bool = True,
        role: str = "primary",
    ) -> Database:
        """Open for reading, or for writing (the writer lock). ``role="standby"``: the
        follower's open of a standby, which applies shipped segments and nothing else."""
        if not (db_dir / manifest_format.FILENAME).exists():
            raise NotFound(f"database {name} does not exist in {db_dir.parent}")
        if readonly:
            return cls(db_dir, name, replay_consistently(db_dir, name), writable=False)
        standby = replication_state.load_standby(db_dir)
        if standby is not None and role != "standby":
            raise standby_refusal(name, standby)
        lock = WriterLock(db_dir, name)
        try:
            state = replay(db_dir, name, repair=True, cut_uncommitted=role == "standby")
            db = cls(db_dir, name, state, writable=True, role=role)
            db._start_writing(lock, background)
        except BaseException:
            lock.release()
            raise
        return db

    def _start_writing(self, lock: WriterLock, background: bool) -> None:
        core = self._core
        core.lock = lock
        if not core.manifest.uuid:  # made before identities: it gets one now, once
            manifest = copy_manifest(core.manifest)
            manifest.uuid, manifest.epoch = manifest_format.new_identity()
            manifest_format.install(self.dir, manifest)
            core.manifest = manifest
        current = self.dir / wal.WAL_DIR / wal.CURRENT
        core.wal = core.wal_writer(current, core.last_lsn + 1, create=not current.exists())
        remove_orphans(core)
        if background:
            self._maintenance.start()
        if core.role == "primary" and core.settings.replicas:
            replicas.start(core, background)

    def close(self, *, checkpoint: bool = True) -> CheckpointReport | None:
        """Checkpoint (a clean close) and release the writer lock. ``checkpoint=False``:
        a standby handing over quickly (to a promotion): its fsynced WAL is replayed at
        the next open instead."""
        core = self._core
        if core.closed:
            return None
        self._maintenance.stop()
        report = None
        try:
            if core.replication is not None:  # ship first, so the checkpoint frees the WAL
                core.replication.close(final=core.broken is None)
            if self.writable and core.broken is None and checkpoint:
                report = self.checkpoint("close")
            elif core.wal is not None and core.broken is None:
                core.wal.fsync()
        finally:
            self._release()
        core.raise_background_failure()
        return report

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abandon()

    def abandon(self) -> None:
        """Stop without a checkpoint (after an error): the WAL keeps what was acknowledged."""
        core = self._core
        if core.closed:
            return
        self._maintenance.stop()
        if core.replication is not None:
            core.replication.close(final=False)
        if core.wal is not None and core.broken is None:
            with contextlib.suppress(EngineError):  # broken already: recovery sees the tail
                core.wal.fsync()
        self._release()

    def _release(self) -> None:
        core = self._core
        core.closed = True
        if core.wal is not None:
            core.wal.close()
        if core.lock is not None:
            core.lock.release()

    # -- what it is now --------------------------------------------------------------
    @property
    def role(self) -> str:
        """ "primary", or "standby" (applies shipped segments only)."""
        return self._core.role

    @property
    def settings(self) -> Settings:
        return self._core.settings

    @property
    def last_lsn(self) -> int:
        return self._core.last_lsn

    @property
    def committed_lsn(self) -> int:
        """The last LSN that ends a transaction (a writer's appends always end one)."""
        return self._core.committed_lsn

    @property
    def last_commit_ns(self) -> int | None:
        """The commit time of the last transaction written or applied."""
        return self._core.last_commit_ns

    @property
    def replication(self) -> shipping.Shipping | None:
        return self._core.replication

    def replication_notes(self) -> list[str]:
        return replicas.notes(self._core)

    @property
    def identity(self) -> tuple[str, int]:
        return self._core.manifest.uuid, self._core.manifest.epoch

    @property
    def checkpoint_lsn(self) -> int:
        return self._core.manifest.checkpoint_lsn

    @property
    def fsync_count(self) -> int:
        return self._core.commit.fsyncs

    @property
    def background_error(self) -> EngineError | None:
        """The failure of a background checkpoint, compaction or flush (sticky)."""
        return self._core.background_error

    @property
    def problem(self) -> str | None:
        """Why writes would fail now (a failed fsync, a failed background checkpoint or
        flush), or None: what a health check reports."""
        core = self._core
        if core.broken is not None:
            return f"refuses writes: {core.broken}"
        failure = core.background_failure()
        if failure is not None:
            return failure.message
        return core.fenced

    @property
    def pending_bytes(self) -> int:
        """Bytes of committed rows not yet in segments (the memtables, frozen ones too)."""
        return self._core.pending_bytes

    def memtable_rows(self) -> int:
        with self._core.write_lock:
            return sum(m.rows for m in self._core.memtables)

    def wal_files(self) -> list[tuple[str, int]]:
        return [(p.name, p.stat().st_size) for p in wal.wal_files(self.dir / wal.WAL_DIR)]

    def tables(self) -> list[str]:
        return sorted(self._core.catalog)

    def schema(self, table: str) -> TableSchema:
        return catalog.schema(self._core, table)

    # -- writes ------------------------------------------------------------------------
    def write(
        self,
        batches: Iterable[Batch],
        *,
        count_overwrites: bool = True,
        confirm_replicas: bool = True,
    ) -> CommitResult:
        """Commit ``batches`` as one transaction; returns once the wal_level's promise holds.

        ``count_overwrites``: count the rows whose key was already there (the ingest
        report's figure). It reads what the batch's time span meets, under the write lock;
        a caller that does not report it (the write endpoint) saves that work.
        ``confirm_replicas=False`` (byrl): return once the commit is durable here; the
        caller acknowledges it only after :meth:`wait_replicas` of the result's LSN (the
        write endpoint does, so its workers commit the next group meanwhile)."""
        core = self._core
        core.check_writable()
        core.raise_background_failure()
        prepared = [
            normalize_rows(b.table, b.rows, b.tags, core.settings.precision) for b in batches
        ]
        prepared = [(t, r, g) for t, r, g in prepared if r.num_rows]
        logged = core.settings.wal_level is not WalLevel.OFF
        tables = [(t, r) for t, r, _ in prepared]
        payloads = encode_payloads(tables if logged else [], beside=count_overwrites)
        with core.write_lock:
            core.check_writable()
            changes = catalog.schema_changes(core, prepared)
            schemas = {change["table"]: TableSchema.from_json(change) for change in changes}
            overwritten = core.overwrites(tables, schemas) if count_overwrites else 0
            encoded = payloads.result()  # encoded meanwhile on the other core
            txn = core.next_txn
            core.next_txn += 1
            rows = sum(r.num_rows for _, r, _ in prepared)
            records, lsn = wal.encode_transaction(core.last_lsn, changes, encoded, txn, rows)
            if records:
                core.append(records)
            core.last_lsn = lsn
            core.catalog.update(schemas)
            for table, rows_of_table in tables:
                core.memtable.add(table, rows_of_table)
        durable = bool(changes) or core.syncs_each_commit()
        if durable:
            core.wait_durable(lsn)
        if confirm_replicas:
            self.wait_replicas(lsn)
        self._after_write()
        return CommitResult(txn=txn, lsn=lsn, rows=rows, durable=durable, overwritten=overwritten)

    def wait_replicas(self, lsn: int) -> None:
        """At byrl, block until every replica store holds ``lsn`` (or raise
        :class:`ReplicaTimeout`, :class:`WritesRefused`); at other levels return."""
        replicas.wait(self._core, lsn)

    def _after_write(self) -> None:
        replicas.notify(self._core)
        self._maintenance.after_write()

    def log_delete(self, spec: DeleteSpec) -> DeleteSpec:
        """Log a DELETE (fsynced, whatever the wal_level) and apply it to the memtables;
        the caller checkpoints to rewrite the segments now. Returns the spec with its LSN."""
        return self._checkpoints.log_delete(spec)

    def preview_expiry(self, settings: Settings) -> retention.ExpiryPreview:
        """What an expiry under ``settings`` (a retention about to be set) removes now."""
        return self._checkpoints.preview_expiry(settings)

    # -- a standby ---------------------------------------------------------------------
    def apply_shipped(self, records: list[wal.Record]) -> int:
        """Standby: append the primary's records past our last LSN to our WAL, verbatim,
        fsync, and apply them as recovery would. Returns the rows committed."""
        rows = standbyapply.apply_shipped(self._core, self._checkpoints, records)
        self._after_write()
        return rows

    def follow_epoch(self, epoch: int) -> None:
        standbyapply.follow_epoch(self._core, epoch)

    def become_primary(self, epoch: int, urls: tuple[str, ...]) -> None:
        """Standby -> primary of ``epoch`` (claimed in the store by the caller)."""
        promotion.become_primary(self._core, self._checkpoints, self._configure, epoch, urls)

    # -- catalog, settings, replicas, restores -----------------------------------------------
    def set_setting(self, key: str, value: str) -> Settings:
        """Change one setting, logged and fsynced; to or from ``off`` checkpoints first."""
        return self._configure.set_setting(key, value)

    def add_replica(self, url: str) -> Settings:
        return self._configure.add_replica(url)

    def remove_replica(self, url: str) -> Settings:
        return self._configure.remove_replica(url)

    def drop_table(self, table: str) -> CheckpointReport:
        """Drop a table and its data; logged, then checkpointed so its files go at once."""
        catalog.drop_table(self._core, table)
        return self.checkpoint("drop table")

    def restore_tables(self, items: install.Restored, mode: str) -> None:
        install.restore_tables(self._core, self._checkpoints, items, mode)

    def drop_segments(self, files: set[str]) -> list[SegmentInfo]:
        return install.drop_segments(self._core, files)

    # -- checkpoints and compaction --------------------------------------------------------
    def checkpoint(self, reason: str = "command") -> CheckpointReport:
        """Expire what the retention period says, write the memtable to segments (and
        rewrite the segments deletes touch), install the manifest, drop the old WAL file."""
        return self._checkpoints.checkpoint(reason)

    def compact(self, min_segments: int = 2) -> CompactionReport:
        """Merge the segments of every partition holding at least ``min_segments``."""
        return self._checkpoints.compact(min_segments)

    def request_checkpoint(self) -> None:
        """Ask the background maintenance for a checkpoint soon, whatever its triggers
        say (a server whose memory ceiling is below them)."""
        self._maintenance.request_checkpoint()

    # -- reads -----------------------------------------------------------------------------
    def view(self) -> View:
        return self._core.view()

    def scan(self, table: str, **bounds: Unpack[ScanBounds]) -> pa.Table:
        """:meth:`scan_batches` as one table in memory."""
        found = self.scan_batches(table, **bounds)
        return as_table(found, self.schema(table).arrow_schema(self.settings.precision))

    def scan_batches(self, table: str, **bounds: Unpack[ScanBounds]) -> Iterator[pa.Table]:
        """Rows of ``table`` after upserts, sorted by tags then ``ts``, in batches (memory
        does not grow with the table); the segments are opened before this returns."""

        def opened() -> Iterator[pa.Table]:
            return scan_batches(self.dir, self.view(), table, **bounds)

        try:
            return opened()
        except FileNotFoundError:
            if self.writable:
                raise
            # a writer compacted the segments away under us: read afresh
            self._core.load(replay_consistently(self.dir, self.name))
            return opened()
