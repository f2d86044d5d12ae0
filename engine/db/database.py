"""An open database: the write path, checkpoints and compaction; reads go through
:mod:`engine.db.reads`.

One process at a time opens a database for writing (the writer lock); any
number open it read-only, which replays the WAL in memory without touching a
file. Threads of the writing process share the object: writes are serialised
by ``_write_lock`` (append to the WAL, apply to the memtable), fsyncs are
shared through group commit, and checkpoints/compactions hold ``_ckpt_lock``
while they write segments outside the write lock, so writers are blocked only
for the WAL rotation.

Lock order, the one order every thread takes them in (a thread may skip any,
never take an earlier one while holding a later one):

1. ``_ckpt_lock``: checkpoints, compactions, restores of tables;
2. ``_write_lock``: the WAL append, the memtable, the catalog, ``self._wal``;
3. the group-commit sync token (``GroupCommit``): one fsync at a time.

The holder of the sync token fsyncs the WAL file it reads from ``self._wal``
without the write lock; ``self._wal`` is only ever replaced while the
rotating thread holds both the write lock and the sync token
(:meth:`GroupCommit.exclusive`), so a leader never sees a closed file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine import names
from engine.db import replicastate as replication_state
from engine.db import shipping
from engine.db.checkpoint import (
    CheckpointInput,
    CheckpointReport,
    CompactionReport,
    plan_checkpoint,
    plan_compaction,
    small_segments,
)
from engine.db.reads import View, count_overwrites, replay_consistently, scan_view
from engine.db.recovery import (
    RecoveryReport,
    ReplayState,
    apply_record,
    replay,
    roll_back,
)
from engine.db.replicastate import fenced_refusal, keep_checkpoint_wal
from engine.errors import (
    AlreadyExists,
    BackgroundBug,
    EngineError,
    InvalidArgument,
    NotFound,
    Remedy,
    StorageError,
    WritesRefused,
)
from engine.io.fileio import IO
from engine.io.lock import WriterLock
from engine.log import wal
from engine.log.groupcommit import GroupCommit
from engine.names import validate_name
from engine.settings import Settings, WalLevel
from engine.storage import deletes, retention
from engine.storage import manifest as manifest_format
from engine.storage.deletes import DeleteSpec
from engine.storage.manifest import Manifest, SegmentInfo, TableEntry
from engine.storage.memtable import Memtable
from engine.storage.rows import normalize_rows
from engine.storage.schema import TableSchema, split_columns

# Checkpoint triggers besides the interval; tests and benchmarks may lower them.
WAL_MAX_BYTES = 64 * 1024 * 1024
MEMTABLE_MAX_BYTES = 64 * 1024 * 1024
# A partition with more segments than this is compacted in the background.
COMPACT_TRIGGER = 8


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
        self._manifest = state.manifest
        self._catalog = state.catalog
        self._settings = state.settings
        self._memtable = state.memtable
        self._immutables: list[Memtable] = []
        self._hidden = set(state.hidden_tables)
        self._deletes: list[DeleteSpec] = list(state.deletes)
        self._last_lsn = state.last_lsn
        self._committed_lsn = state.committed_lsn
        self.last_commit_ns = state.last_commit_ns
        self.role = role  # "primary", or "standby": applies shipped segments only
        self._replication: shipping.Shipping | None = None
        self._next_txn = state.next_txn
        self._write_lock = threading.RLock()
        self._ckpt_lock = threading.Lock()
        self._commit = GroupCommit(state.last_lsn)
        self._wal: wal.WalWriter | None = None
        self._lock: WriterLock | None = None
        self._broken: str | None = None
        self._closed = False
        self._last_checkpoint = time.monotonic()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._checkpoint_requested = False
        self.background_error: EngineError | None = None
        self._expiring: retention.ExpiryPreview | None = None  # the checkpoint's expiry

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
            db._lock = lock
            db._start_writing(background)
        except BaseException:
            lock.release()
            raise
        return db

    def _start_writing(self, background: bool) -> None:
        if not self._manifest.uuid:  # made before identities: it gets one now, once
            manifest = _copy_manifest(self._manifest)
            manifest.uuid, manifest.epoch = manifest_format.new_identity()
            manifest_format.install(self.dir, manifest)
            self._manifest = manifest
        current = self.dir / wal.WAL_DIR / wal.CURRENT
        start = self._last_lsn + 1
        self._wal = self._wal_writer(current, start, create=not current.exists())
        self._remove_orphans()
        if background:
            self._spawn(self._maintenance_loop, "tsadmin-maintenance")
            self._spawn(self._flush_loop, "tsadmin-wal-flusher")
        if self.role == "primary" and self._settings.replicas:
            self._start_replication(background)

    def _start_replication(self, background: bool) -> None:
        self._replication = shipping.factory()(
            self.dir,
            self.name,
            self._settings.replicas,
            lambda: (self._manifest.uuid, self._manifest.epoch),
            settings=lambda: self._settings,
        )
        self._replication.start(background)

    def _wal_writer(self, path: Path, start_lsn: int, *, create: bool) -> wal.WalWriter:
        identity = self._manifest
        return wal.WalWriter(
            path, self.name, start_lsn, create=create, uuid=identity.uuid, epoch=identity.epoch
        )

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self, *, checkpoint: bool = True) -> CheckpointReport | None:
        """Checkpoint (a clean close) and release the writer lock. ``checkpoint=False``:
        a standby handing over quickly (to a promotion): its fsynced WAL is replayed at
        the next open instead."""
        if self._closed:
            return None
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        report = None
        try:
            if self._replication is not None:  # ship first, so the checkpoint frees the WAL
                self._replication.close(final=self._broken is None)
            if self.writable and self._broken is None and checkpoint:
                report = self.checkpoint("close")
            elif self._wal is not None and self._broken is None:
                self._wal.fsync()
        finally:
            self._closed = True
            if self._wal is not None:
                self._wal.close()
            if self._lock is not None:
                self._lock.release()
        self._raise_background_failure()
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
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join()
        self._closed = True
        if self._replication is not None:
            self._replication.close(final=False)
        if self._wal is not None:
            try:
                if self._broken is None:
                    self._wal.fsync()
            except EngineError:
                pass
            self._wal.close()
        if self._lock is not None:
            self._lock.release()

    # -- properties ------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def last_lsn(self) -> int:
        return self._last_lsn

    @property
    def committed_lsn(self) -> int:
        """The last LSN that ends a transaction (a writer's appends always end one)."""
        return self._last_lsn if self.writable else self._committed_lsn

    @property
    def replication(self) -> shipping.Shipping | None:
        return self._replication

    def replication_notes(self) -> list[str]:
        """What the shipper reported (reseeds) and the stores it could not reach."""
        rep = self._replication
        if rep is None:
            return []
        errors = [f"replica {url} is behind: {message}" for url, message in rep.errors.items()]
        return [*rep.notices, *errors]

    @property
    def identity(self) -> tuple[str, int]:
        return self._manifest.uuid, self._manifest.epoch

    @property
    def checkpoint_lsn(self) -> int:
        return self._manifest.checkpoint_lsn

    @property
    def fsync_count(self) -> int:
        return self._commit.fsyncs

    def tables(self) -> list[str]:
        return sorted(self._catalog)

    def schema(self, table: str) -> TableSchema:
        schema = self._catalog.get(table)
        if schema is None:
            raise NotFound(f"table {table} does not exist in database {self.name}")
        return schema.copy()

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
        self._check_writable()
        self._raise_background_failure()
        prepared = [
            normalize_rows(b.table, b.rows, b.tags, self._settings.precision) for b in batches
        ]
        prepared = [(t, r, g) for t, r, g in prepared if r.num_rows]
        logged = self._settings.wal_level is not WalLevel.OFF
        payloads = [wal.encode_data(t, r) for t, r, _ in prepared] if logged else []
        with self._write_lock:
            self._check_writable()
            changes = self._schema_changes(prepared)
            txn = self._next_txn
            self._next_txn += 1
            rows = sum(r.num_rows for _, r, _ in prepared)
            records, lsn = self._encode(changes, payloads, txn, rows)
            if records:
                self._append(records)
            self._last_lsn = lsn
            for change in changes:
                self._catalog[change["table"]] = TableSchema.from_json(change)
            overwritten = 0
            for table, rows, _tags in prepared:
                if count_overwrites:
                    overwritten += self._overwrites(table, rows)
                self._memtable.add(table, rows)
        durable = bool(changes) or self._sync_each_commit()
        if durable:
            self._wait_durable(lsn)
        if confirm_replicas:
            self.wait_replicas(lsn)
        self._after_write()
        return CommitResult(txn=txn, lsn=lsn, rows=rows, durable=durable, overwritten=overwritten)

    def wait_replicas(self, lsn: int) -> None:
        """At byrl, block until every replica store holds ``lsn`` (or raise
        :class:`ReplicaTimeout`, :class:`WritesRefused`); at other levels return."""
        if self._settings.wal_level is WalLevel.BYRL and self._replication is not None:
            self._replication.wait_confirmed(lsn, self._settings.replica_timeout_ms / 1000)

    def apply_shipped(self, records: list[wal.Record]) -> int:
        """Standby: append the primary's records past our last LSN to our WAL, verbatim
        (same LSNs, so the standby's log is the primary's), fsync, and apply them as
        recovery would. Returns the rows committed."""
        if self.role != "standby":
            raise InvalidArgument(f"database {self.name} is not a standby")
        self._ensure_wal_accepts({r.type for r in records})
        with self._write_lock:
            fresh = [r for r in records if wal.next_lsn_after(r) - 1 > self._last_lsn]
            if not fresh:
                return 0
            if fresh[0].lsn > self._last_lsn + 1:
                raise InvalidArgument(
                    f"database {self.name}: shipped records start at LSN {fresh[0].lsn}, "
                    f"after {self._last_lsn + 1}"
                )
            self._append(
                b"".join(wal.encode_record(r.lsn, r.txn, r.type, r.payload) for r in fresh)
            )
            state = ReplayState(
                manifest=self._manifest,
                catalog=self._catalog,
                settings=self._settings,
                memtable=self._memtable,
                hidden_tables=self._hidden,
                last_lsn=self._last_lsn,
                next_txn=self._next_txn,
                current_start_lsn=None,
                report=RecoveryReport(self.name),
                committed_lsn=self._last_lsn,
                deletes=self._deletes,
            )
            known = len(self._deletes)
            pending: dict[int, list[wal.Record]] = {}
            for record in fresh:
                apply_record(state, pending, record, self._wal.path if self._wal else self.dir)
            roll_back(state, pending)
            for table in self._hidden:
                for frozen in self._immutables:
                    frozen.drop(table)
            for spec in self._deletes[known:]:
                for frozen in self._immutables:
                    deletes.apply_to_memtable(frozen, spec, self._settings.precision)
            self._settings, self._last_lsn, self._next_txn = (
                state.settings,
                state.last_lsn,
                state.next_txn,
            )
            self.last_commit_ns = state.last_commit_ns or self.last_commit_ns
            lsn = self._last_lsn
        self._wait_durable(lsn)
        self._after_write()
        return state.report.rows_applied

    def follow_epoch(self, epoch: int) -> None:
        """Standby: the history it follows went on in ``epoch`` (installed at the next
        checkpoint, with which the WAL's header says so too)."""
        with self._write_lock:
            manifest = _copy_manifest(self._manifest)
            manifest.epoch = epoch
            self._manifest = manifest

    def become_primary(self, epoch: int, replicas: tuple[str, ...]) -> None:
        """Standby -> primary of ``epoch`` (claimed in the store by the caller): what it
        applied is checkpointed, the manifest takes the epoch, and it ships to
        ``replicas`` from now on. Idempotent, so an interrupted promotion can rerun."""
        self.follow_epoch(epoch)
        self.checkpoint("promote")
        with self._ckpt_lock, self._write_lock:
            if manifest_format.load(self.dir).epoch != epoch:
                manifest = _copy_manifest(self._manifest)
                manifest_format.install(self.dir, manifest)
        self.role = "primary"
        if self._settings.replicas != replicas:
            self._change_settings(replace(self._settings, replicas=replicas))
        else:
            self._restart_replication()

    def _overwrites(self, table: str, rows: pa.Table) -> int:
        entry = self._manifest.tables.get(table)
        stored = entry.segments if entry is not None and table not in self._hidden else []
        return count_overwrites(
            self.dir,
            table,
            rows,
            self._catalog[table].tags,
            [self._memtable, *self._immutables],
            stored,
            self._deletes,
            self._settings.precision,
        )

    def _sync_each_commit(self) -> bool:
        level = self._settings.wal_level
        if level in (WalLevel.SYNC, WalLevel.BYRL):
            return True
        if level is not WalLevel.FLUSH:
            return False
        # The flusher thread may be starved of CPU; a writer that finds the last fsync a
        # whole period old syncs before it acknowledges, so under load the promise "all
        # but the last period" holds without relying on that thread's timing.
        period = self._settings.wal_fsync_period_ms / 1000
        return period == 0 or time.monotonic() - self._commit.last_fsync_at >= period

    def _schema_changes(
        self, prepared: list[tuple[str, pa.Table, list[str]]]
    ) -> list[dict[str, Any]]:
        pending: dict[str, TableSchema] = {}
        for table, rows, tags in prepared:
            current = pending.get(table) or self._catalog.get(table) or TableSchema()
            _tags, fields = split_columns(rows)
            grown = current.grown_by(table, tags, fields)
            if grown is not None:
                pending[table] = grown
        return [{"op": "table", "table": t, **s.to_json()} for t, s in pending.items()]

    def _encode(
        self, changes: list[dict[str, Any]], payloads: list[bytes], txn: int, rows: int
    ) -> tuple[bytes, int]:
        lsn = self._last_lsn
        parts = []
        for change in changes:
            lsn += 1
            parts.append(wal.encode_record(lsn, 0, wal.RecordType.DDL, wal.encode_ddl(change)))
        for payload in payloads:
            lsn += 1
            parts.append(wal.encode_record(lsn, txn, wal.RecordType.DATA, payload))
        if payloads:
            lsn += 1
            commit = wal.encode_commit(len(payloads), rows)
            parts.append(wal.encode_record(lsn, txn, wal.RecordType.COMMIT, commit))
        return b"".join(parts), lsn

    def _append(self, records: bytes) -> None:
        assert self._wal is not None
        self._wal.append(records)  # DiskFull leaves the file as it was: nothing changes

    def _wait_durable(self, lsn: int) -> None:
        try:
            self._commit.wait_durable(lsn, lambda: self._last_lsn, self._fsync_wal)
        except EngineError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: never retry.
            self._broken = f"WAL fsync failed: {exc}"
            raise

    def _fsync_wal(self) -> None:
        # Called with the sync token held: taking the write lock here would invert the
        # lock order (a checkpoint holds the write lock while it waits for the token).
        current = self._wal
        assert current is not None
        current.fsync()

    def _log_ddl(self, change: dict[str, Any]) -> int:
        """Log a catalog or settings change, durably, or not at all."""
        with self._write_lock:
            return self._log_standalone(wal.RecordType.DDL, wal.encode_ddl(change))

    def _log_standalone(self, rtype: wal.RecordType, payload: bytes) -> int:
        """Append an auto-committed record and fsync it, the write lock held (the caller
        holds it too, to apply the change before anyone else writes): if the fsync fails
        the record (the last one) is cut off again and a reopen cannot apply a change
        that was reported as failed."""
        with self._write_lock:
            self._check_writable()
            assert self._wal is not None
            lsn, start = self._last_lsn + 1, self._wal.size
            self._append(wal.encode_record(lsn, 0, rtype, payload))
            self._last_lsn = lsn
            try:
                self._wait_durable(lsn)
            except EngineError:
                self._wal.cut_back(start)
                self._last_lsn = lsn - 1
                raise
        return lsn

    def _ensure_wal_accepts(self, types: set[wal.RecordType]) -> None:
        """The WAL version rule (``engine/log/wal.py``): a record type newer than the file
        being appended to goes into a new file, which a checkpoint starts."""
        assert self._wal is not None
        if all(self._wal.accepts(t) for t in types):
            return
        self._checkpoint("WAL format upgrade")
        if not all(self._wal.accepts(t) for t in types):
            raise StorageError(
                f"database {self.name}: its WAL file is of an older format and cannot be "
                "rotated while a replica still needs it",
                hint="let the replica catch up (one shipping round), then retry",
            ).advise(Remedy.SHIP_ONCE, self.name)

    # -- deletes and retention ---------------------------------------------------------------
    def log_delete(self, spec: DeleteSpec) -> DeleteSpec:
        """Log a DELETE (fsynced, whatever the wal_level) and apply it to the memtables;
        segments follow through every read and at the next checkpoint, which the caller
        runs to rewrite them now. Returns the spec with its LSN."""
        self._check_writable()
        self._ensure_wal_accepts({wal.RecordType.DELETE})
        with self._write_lock:
            lsn = self._log_standalone(wal.RecordType.DELETE, wal.encode_delete(spec.to_json()))
            logged = replace(spec, lsn=lsn)
            precision = self._settings.precision
            for memtable in [self._memtable, *self._immutables]:
                deletes.apply_to_memtable(memtable, logged, precision)
            self._deletes.append(logged)
        return logged

    def _expire_due(self) -> DeleteSpec | None:
        """Retention: log the expiry of the partitions that ended before now - retention,
        if there is data in them (a primary only: a standby takes its primary's)."""
        if not self.writable or self.role != "primary" or self._broken is not None:
            return None
        if self._replication is not None and self._replication.fenced:
            return None
        with self._write_lock:
            memtables = [self._memtable, *self._immutables]
            spec = retention.expiry_due(self._settings, self._manifest, memtables)
            if spec is not None:
                self._expiring = retention.preview_expiry(self._settings, self._manifest, memtables)
        return None if spec is None else self.log_delete(spec)

    def preview_expiry(self, settings: Settings) -> retention.ExpiryPreview:
        """What an expiry under ``settings`` (a retention about to be set) removes now."""
        with self._write_lock:
            memtables = [self._memtable, *self._immutables]
            return retention.preview_expiry(settings, self._manifest, memtables)

    def _raise_background_failure(self) -> None:
        """A background checkpoint, compaction or WAL flush that failed is reported by the
        next write (and by close): sticky until the database is reopened."""
        failure = self._background_failure()
        if failure is not None:
            raise type(failure)(
                f"database {self.name}: {failure.message}",
                hint=failure.hint or "close and reopen it; recovery replays what was acknowledged",
            )

    def _background_failure(self) -> EngineError | None:
        if self.background_error is not None:
            return type(self.background_error)(
                f"a background checkpoint or flush failed: {self.background_error.message}",
                hint=self.background_error.hint,
            )
        if self._replication is not None and self._replication.bug is not None:
            return self._replication.bug
        return None

    def _check_writable(self) -> None:
        """Refuse a change of data, schema or settings: read-only, closed, broken, a
        standby (it takes its changes from its primary only) or fenced."""
        self._check_open()
        if self.role == "standby":
            standby = replication_state.load_standby(self.dir)
            if standby is not None:
                raise standby_refusal(self.name, standby)
        if self._replication is not None and self._replication.fenced:
            raise fenced_refusal(self._replication.fenced, self.name)

    def _check_open(self) -> None:
        """Refuse any file change (a checkpoint too): read-only, closed or broken."""
        if not self.writable:
            raise InvalidArgument(f"database {self.name} is open read-only")
        if self._closed:
            raise InvalidArgument(f"database {self.name} is closed")
        if self._broken is not None:
            raise StorageError(
                f"database {self.name} refuses writes: {self._broken}",
                hint="close and reopen it; recovery replays what was acknowledged",
            )

    def _after_write(self) -> None:
        assert self._wal is not None
        if self._replication is not None and self._settings.wal_level is not WalLevel.BYRL:
            self._replication.notify()  # (a byrl write was shipped before it returned)
        pending = self.pending_bytes
        if pending > 2 * MEMTABLE_MAX_BYTES or (not self._threads and self._needs_checkpoint()):
            self.checkpoint("memory" if pending > MEMTABLE_MAX_BYTES else "wal size")
        elif self._needs_checkpoint():
            self._wake.set()

    @property
    def problem(self) -> str | None:
        """Why writes would fail now (a failed fsync, a failed background checkpoint or
        flush), or None: what a health check reports."""
        if self._broken is not None:
            return f"refuses writes: {self._broken}"
        failure = self._background_failure()
        if failure is not None:
            return failure.message
        if self._replication is not None and self._replication.fenced:
            return self._replication.fenced
        return None

    @property
    def pending_bytes(self) -> int:
        """Bytes of committed rows not yet in segments (the memtables, frozen ones too)."""
        return self._memtable.nbytes + sum(m.nbytes for m in self._immutables)

    def request_checkpoint(self) -> None:
        """Ask the background maintenance for a checkpoint soon, whatever its triggers
        say (a server whose memory ceiling is below them)."""
        self._checkpoint_requested = True
        self._wake.set()

    def _needs_checkpoint(self) -> bool:
        assert self._wal is not None
        if self._memtable.nbytes > MEMTABLE_MAX_BYTES:
            return True
        # while a replica holds checkpoint.wal the WAL cannot rotate: its size is no reason
        held = bool(self._settings.replicas) and (self.dir / wal.WAL_DIR / wal.CHECKPOINT).exists()
        return self._wal.size > WAL_MAX_BYTES and not held

    # -- catalog and settings ------------------------------------------------------------
    def set_setting(self, key: str, value: str) -> Settings:
        """Change one setting, logged and fsynced; to or from ``off`` checkpoints first."""
        self._check_writable()
        new = self._settings.with_value(key, value)
        if new.wal_level is WalLevel.BYRL and not new.replicas:
            raise InvalidArgument(
                "wal_level byrl acknowledges a write once a replica store holds it, and "
                f"database {self.name} has no replica",
                hint="add a replica store first",
            ).advise(Remedy.ADD_REPLICA, self.name)
        if new.wal_level is WalLevel.OFF and new.replicas:
            raise InvalidArgument(
                f"database {self.name} ships its WAL to replicas; wal_level off writes none",
                hint="remove the replicas first, or use sync or flush",
            )
        return self._change_settings(new)

    def _change_settings(self, new: Settings) -> Settings:
        """Log and apply ``new``; to or from off and to byrl checkpoint first."""
        level, old = new.wal_level, self._settings.wal_level
        if (level is WalLevel.OFF) != (old is WalLevel.OFF) or (
            level is WalLevel.BYRL and old is not WalLevel.BYRL
        ):
            self.checkpoint("wal_level change")
        self._log_ddl({"op": "settings", "settings": new.to_json()})
        self._settings = new
        self._wake.set()
        self._restart_replication()
        return new

    def _restart_replication(self) -> None:
        urls = self._settings.replicas
        current = self._replication
        if current is not None and current.urls == urls:
            return
        if current is not None:
            current.close(final=False)
            self._replication = None
        if urls and self.role == "primary":
            self._start_replication(background=bool(self._threads))

    def add_replica(self, url: str) -> Settings:
        """Ship this database's log to the store ``url`` from now on (logged, fsynced). The
        WAL after the current checkpoint is held until the store has a snapshot. The
        store is made and checked first by ``engine.replication.primary.add_replica``."""
        self._check_writable()
        if url in self._settings.replicas:
            raise AlreadyExists(f"database {self.name} already ships to {url}")
        if self._settings.wal_level is WalLevel.OFF:
            raise InvalidArgument(
                f"database {self.name} has wal_level off: it has no WAL to ship",
                hint="set wal_level to sync, flush or byrl first",
            )
        pin = replication_state.ShipState(
            url, self._manifest.epoch, shipped_lsn=self._manifest.checkpoint_lsn
        )
        if replication_state.load_ship_state(self.dir, url) is None:
            replication_state.save_ship_state(self.dir, pin)
        return self._change_settings(
            replace(self._settings, replicas=(*self._settings.replicas, url))
        )

    def remove_replica(self, url: str) -> Settings:
        self._check_writable()
        if url not in self._settings.replicas:
            raise NotFound(
                f"database {self.name} does not ship to {url}",
                hint=f"its replicas: {', '.join(self._settings.replicas) or 'none'}",
            )
        remaining = tuple(u for u in self._settings.replicas if u != url)
        new = replace(self._settings, replicas=remaining)
        if new.wal_level is WalLevel.BYRL and not remaining:
            new = replace(new, wal_level=WalLevel.SYNC)  # byrl without a replica is refused
        settings = self._change_settings(new)
        replication_state.forget(self.dir, url)
        return settings

    def drop_table(self, table: str) -> CheckpointReport:
        """Drop a table and its data; logged, then checkpointed so its files go at once."""
        validate_name("table", table)
        self.schema(table)
        with self._write_lock:
            self._log_ddl({"op": "drop_table", "table": table})
            del self._catalog[table]
            self._memtable.drop(table)
            for frozen in self._immutables:
                frozen.drop(table)
            self._hidden.add(table)
        return self.checkpoint("drop table")

    def restore_tables(
        self, items: dict[str, tuple[TableSchema, list[tuple[Path, SegmentInfo]]]], mode: str
    ) -> None:
        """Put restored tables in: ``replace`` swaps each table, ``merge`` upserts onto it,
        ``fail`` refuses tables that exist. One atomic manifest install commits it all."""
        self._check_writable()
        for table, (schema, _files) in items.items():
            validate_name("table", table)
            existing = self._catalog.get(table)
            if existing is not None and mode == "fail":
                raise AlreadyExists(
                    f"table {table} exists in database {self.name}",
                    hint="restore it in mode replace or merge",
                )
            if existing is not None and mode == "merge":
                existing.grown_by(table, schema.tags, schema.fields)  # a type conflict stops here
        self.checkpoint("restore")  # what was committed is in segments: the WAL holds nothing more
        with self._ckpt_lock:
            manifest = _copy_manifest(self._manifest)
            copied: list[Path] = []
            obsolete: list[str] = []
            try:
                for table, (schema, files) in items.items():
                    segments = []
                    for source, info in files:
                        file_id = manifest.next_segment
                        manifest.next_segment += 1
                        rel = names.segment_path(table, info.partition, file_id)
                        IO.copy_file(source, self.dir / rel, "restore.write")
                        copied.append(self.dir / rel)
                        segments.append(replace(info, file=rel, seq=file_id))
                    manifest.tables[table] = self._restored_entry(
                        manifest, table, schema, segments, mode, obsolete
                    )
                IO.crash_point("restore.after_copy")
                with self._write_lock:
                    manifest.checkpoint_lsn = self._last_lsn
                    manifest_format.install(self.dir, manifest)
                    self._manifest = manifest
                    for table in items:
                        self._catalog[table] = manifest.tables[table].schema.copy()
            except BaseException:
                IO.remove_many(copied)
                raise
            IO.crash_point("restore.after_manifest")
            IO.remove_many(self.dir / f for f in obsolete)

    def drop_segments(self, files: set[str]) -> list[SegmentInfo]:
        """Remove the listed segment files from the database (damaged ones, found by
        ``db verify``): one atomic manifest install, then the files go. Returns what was
        dropped; their rows are lost unless another segment holds the same keys."""
        self._check_writable()
        with self._ckpt_lock:
            manifest = _copy_manifest(self._manifest)
            dropped = []
            for entry in manifest.tables.values():
                dropped += [s for s in entry.segments if s.file in files]
                entry.segments = [s for s in entry.segments if s.file not in files]
            if not dropped:
                return []
            with self._write_lock:
                manifest_format.install(self.dir, manifest)
                self._manifest = manifest
            IO.remove_many(self.dir / s.file for s in dropped)
        return dropped

    def _restored_entry(
        self,
        manifest: Manifest,
        table: str,
        schema: TableSchema,
        segments: list[SegmentInfo],
        mode: str,
        obsolete: list[str],
    ) -> TableEntry:
        old = manifest.tables.get(table)
        if old is None or mode != "merge":
            if old is not None:
                obsolete += [s.file for s in old.segments]
            return TableEntry(schema.copy(), segments)
        grown = old.schema.grown_by(table, schema.tags, schema.fields) or old.schema
        return TableEntry(grown.copy(), [*old.segments, *segments])

    # -- checkpoints and compaction --------------------------------------------------------
    def checkpoint(self, reason: str = "command") -> CheckpointReport:
        """Expire what the retention period says, write the memtable to segments (and
        rewrite the segments deletes touch), install the manifest, drop the old WAL file."""
        self._check_open()
        self._expiring = None
        self._expire_due()
        report = self._checkpoint(reason)
        if self._expiring is not None:  # say what the retention removed
            report.rows_expired = self._expiring.rows
            report.partitions_expired = len(self._expiring.partitions)
            self._expiring = None
        return report

    def _checkpoint(self, reason: str) -> CheckpointReport:
        self._check_open()
        started = time.perf_counter()
        with self._ckpt_lock:
            with self._write_lock:
                if self._nothing_to_checkpoint():
                    self._last_checkpoint = time.monotonic()
                    return CheckpointReport(self.name, reason, skipped=True, lsn=self._last_lsn)
                frozen = self._memtable
                self._memtable = Memtable()
                self._immutables.append(frozen)
                lsn = self._last_lsn
                rotated = self._rotate_wal()
                catalog = {t: s.copy() for t, s in self._catalog.items()}
                hidden = set(self._hidden)
                settings = self._settings
                next_txn = self._next_txn
                pending = list(self._immutables)
                applying = [d for d in self._deletes if d.lsn <= lsn]
            IO.crash_point("checkpoint.after_rotate")
            plan = plan_checkpoint(
                self.dir,
                self._manifest,
                CheckpointInput(catalog, hidden, settings, pending, applying),
                lsn,
                next_txn,
            )
            IO.crash_point("checkpoint.after_segments")
            self._commit_manifest(plan.manifest, plan.written, "checkpoint.after_manifest")
            with self._write_lock:
                self._manifest = plan.manifest
                self._immutables = [m for m in self._immutables if m not in pending]
                self._hidden -= hidden
                self._deletes = [d for d in self._deletes if d.lsn > lsn]
            wal_removed = self._remove_checkpoint_wal(settings)
            IO.crash_point("checkpoint.after_wal_delete")
            IO.remove_many(self.dir / f for f in plan.obsolete_files)
            self._last_checkpoint = time.monotonic()
        if self._threads and self._compaction_due():
            self._wake.set()  # the maintenance thread merges the partition's segments
        return plan.report(self.name, reason, rotated, wal_removed, time.perf_counter() - started)

    def _commit_manifest(self, manifest: Manifest, written: list[SegmentInfo], step: str) -> None:
        """Install ``manifest``, the commit point; if that fails, remove the segments written
        for it (nothing lists them), so a failed checkpoint or compaction leaves no trace."""
        try:
            manifest_format.install(self.dir, manifest)
        except BaseException:
            IO.remove_many(self.dir / s.file for s in written)
            raise
        IO.crash_point(step)

    def _nothing_to_checkpoint(self) -> bool:
        return (
            self._memtable.is_empty()
            and not self._immutables
            and not self._hidden
            and not self._deletes
            and self._last_lsn == self._manifest.checkpoint_lsn
            and self._settings == self._manifest.settings
            and not (self.dir / wal.WAL_DIR / wal.CHECKPOINT).exists()
        )

    def _rotate_wal(self) -> bool:
        """current.wal -> checkpoint.wal and a fresh current.wal (under the write lock).

        If checkpoint.wal is still there (an earlier checkpoint failed), keep
        appending to current.wal: the coming manifest covers both files.
        """
        assert self._wal is not None
        wal_dir = self.dir / wal.WAL_DIR
        current, previous = wal_dir / wal.CURRENT, wal_dir / wal.CHECKPOINT
        if previous.exists():
            return False
        old = self._wal
        self._commit.exclusive(
            self._last_lsn, old.fsync, lambda: self._swap_wal(old, current, previous)
        )
        return True

    def _swap_wal(self, old: wal.WalWriter, current: Path, previous: Path) -> None:
        """Close the fsynced ``current.wal``, rename it, start a new one (sync token held)."""
        old.close()
        IO.rename(current, previous)
        IO.crash_point("checkpoint.after_rename")
        try:
            self._wal = self._wal_writer(current, self._last_lsn + 1, create=True)
        except BaseException:
            IO.remove(current, missing_ok=True)
            IO.rename(previous, current)
            self._wal = self._wal_writer(current, 0, create=False)
            raise

    def _remove_checkpoint_wal(self, settings: Settings) -> int:
        path = self.dir / wal.WAL_DIR / wal.CHECKPOINT
        if not path.exists():
            return 0
        if self._holds_for_replicas(path, settings):
            return 0
        size = path.stat().st_size
        IO.remove_many([path])
        return size

    def _holds_for_replicas(self, path: Path, settings: Settings) -> bool:
        """A replica that has not shipped ``checkpoint.wal``'s records keeps it (the next
        checkpoint then appends on to ``current.wal``), up to the hold limits."""
        if not settings.replicas or self.role != "primary":
            return False
        assert self._wal is not None
        notices = self._replication.notices if self._replication is not None else []
        return keep_checkpoint_wal(
            self.dir,
            settings.replicas,
            path,
            self._wal.start_lsn - 1,
            settings.replica_hold_bytes,
            settings.replica_hold_age_ns / 1e9,
            notices,
        )

    def compact(self, min_segments: int = 2) -> CompactionReport:
        """Merge the segments of every partition holding at least ``min_segments``."""
        self._check_open()
        started = time.perf_counter()
        with self._ckpt_lock:
            plan = plan_compaction(self.dir, self._manifest, min_segments)
            if not plan.merged:
                return plan.report(self.name, time.perf_counter() - started)
            IO.crash_point("compact.after_segments")
            self._commit_manifest(plan.manifest, plan.written, "compact.after_manifest")
            with self._write_lock:
                self._manifest = plan.manifest
            IO.remove_many(self.dir / f for f in plan.obsolete_files)
        return plan.report(self.name, time.perf_counter() - started)

    def _maintenance_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                due = time.monotonic() - self._last_checkpoint >= self._interval_seconds()
                requested, self._checkpoint_requested = self._checkpoint_requested, False
                if due or requested or self._needs_checkpoint():
                    self.checkpoint("interval" if due else "requested" if requested else "size")
                if self._compaction_due():
                    self.compact(min_segments=COMPACT_TRIGGER + 1)
            except EngineError as exc:
                self.background_error = exc  # the next checkpoint retries; close reports it
            except Exception as exc:  # a bug: said by the next write and the close, never lost
                self.background_error = BackgroundBug.of("checkpoint", exc)

    def _compaction_due(self) -> bool:
        """A partition holds more than COMPACT_TRIGGER small segments."""
        for entry in self._manifest.tables.values():
            per_partition: dict[int, list[SegmentInfo]] = {}
            for info in entry.segments:
                per_partition.setdefault(info.partition, []).append(info)
            if any(small_segments(infos) > COMPACT_TRIGGER for infos in per_partition.values()):
                return True
        return False

    def _interval_seconds(self) -> float:
        return self._settings.checkpoint_interval_ns / 1e9

    def _flush_loop(self) -> None:
        while not self._stop.wait(timeout=self._settings.wal_fsync_period_ms / 1000 or 0.05):
            if (
                self._settings.wal_level is WalLevel.FLUSH
                and self._commit.durable_lsn < self._last_lsn
            ):
                try:
                    self._wait_durable(self._last_lsn)
                except EngineError as exc:
                    self.background_error = exc
                    return
                except Exception as exc:  # a bug: reported, as a failed fsync is
                    self.background_error = BackgroundBug.of("WAL flush", exc)
                    return

    def _remove_orphans(self) -> None:
        """Delete segment files no manifest lists (a crash between a write and its install)."""
        live = self._manifest.segment_files()
        tables_dir = self.dir / names.TABLES_DIR
        if not tables_dir.exists():
            return
        orphans = [
            path
            for path in tables_dir.rglob("*")
            if path.is_file() and str(path.relative_to(self.dir)) not in live
        ]
        IO.remove_many(orphans)
        for directory in sorted(tables_dir.rglob("*"), key=lambda p: -len(p.parts)):
            if directory.is_dir() and not any(directory.iterdir()):
                IO.remove_tree(directory)

    # -- reads -----------------------------------------------------------------------------
    def view(self) -> View:
        with self._write_lock:
            active = Memtable({t: list(b) for t, b in self._memtable.batches.items()})
            return View(
                manifest=self._manifest,
                catalog={t: s.copy() for t, s in self._catalog.items()},
                settings=self._settings,
                memtables=[*self._immutables, active],
                hidden_tables=frozenset(self._hidden),
                last_lsn=self._last_lsn,
                committed_lsn=self.committed_lsn,
                deletes=tuple(self._deletes),
            )

    def scan(
        self,
        table: str,
        *,
        start: int | None = None,
        end: int | None = None,
        where: dict[str, str] | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Rows of ``table`` after upserts, sorted by tags then ``ts``; ``[start, end)``."""
        try:
            return scan_view(
                self.dir, self.view(), table, start=start, end=end, where=where, limit=limit
            )
        except FileNotFoundError:
            if self.writable:
                raise
            self._reload()  # a writer compacted the segments away under us: read afresh
            return scan_view(
                self.dir, self.view(), table, start=start, end=end, where=where, limit=limit
            )

    def _reload(self) -> None:
        state = replay_consistently(self.dir, self.name)
        with self._write_lock:
            self._manifest, self._catalog, self._settings = (
                state.manifest,
                state.catalog,
                state.settings,
            )
            self._memtable, self._hidden, self._last_lsn = (
                state.memtable,
                set(state.hidden_tables),
                state.last_lsn,
            )
            self._committed_lsn = state.committed_lsn
            self._deletes = list(state.deletes)

    def memtable_rows(self) -> int:
        with self._write_lock:
            return self._memtable.rows + sum(m.rows for m in self._immutables)

    def wal_files(self) -> list[tuple[str, int]]:
        return [(p.name, p.stat().st_size) for p in wal.wal_files(self.dir / wal.WAL_DIR)]


def _copy_manifest(manifest: Manifest) -> Manifest:
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
