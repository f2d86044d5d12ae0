"""Checkpoints, compaction and what runs with them: retention, deletes, WAL rotation.

A checkpoint freezes the memtable, rotates ``current.wal`` to ``checkpoint.wal``
(under the write lock: the only moment writers wait), writes the frozen rows and the
segments deletes touch outside it, installs the manifest (the commit point) and
removes ``checkpoint.wal`` unless a replica still needs its records. What the segments
become is planned by ``checkpoint.py``; this module does it to an open database.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from engine.db.checkpoint import (
    CheckpointInput,
    CheckpointReport,
    CompactionReport,
    plan_checkpoint,
    plan_compaction,
    small_segments,
)
from engine.db.core import Core
from engine.db.replicastate import keep_checkpoint_wal
from engine.errors import Remedy, StorageError
from engine.io.fileio import IO
from engine.log import wal
from engine.settings import Settings
from engine.storage import deletes, retention
from engine.storage import manifest as manifest_format
from engine.storage.deletes import DeleteSpec
from engine.storage.manifest import Manifest, SegmentInfo
from engine.storage.memtable import Memtable

# A partition with more segments than this is compacted in the background.
COMPACT_TRIGGER = 8


class Checkpoints:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.last_at = time.monotonic()  # when the last checkpoint ended (or was not needed)
        self._expiring: retention.ExpiryPreview | None = None  # this checkpoint's expiry

    def checkpoint(self, reason: str = "command") -> CheckpointReport:
        """Expire what the retention period says, write the memtable to segments (and
        rewrite the segments deletes touch), install the manifest, drop the old WAL file."""
        self.core.check_open()
        self._expiring = None
        self._expire_due()
        report = self.run(reason)
        if self._expiring is not None:  # say what the retention removed
            report.rows_expired = self._expiring.rows
            report.partitions_expired = len(self._expiring.partitions)
            self._expiring = None
        return report

    def run(self, reason: str) -> CheckpointReport:
        """A checkpoint without the retention's expiry first."""
        core = self.core
        core.check_open()
        started = time.perf_counter()
        with core.ckpt_lock:
            with core.write_lock:
                if self._nothing_to_do():
                    self.last_at = time.monotonic()
                    return CheckpointReport(core.name, reason, skipped=True, lsn=core.last_lsn)
                core.immutables.append(core.memtable)
                core.memtable = Memtable()
                lsn = core.last_lsn
                rotated = self._rotate_wal()
                catalog = {t: s.copy() for t, s in core.catalog.items()}
                hidden = set(core.hidden)
                settings = core.settings
                pending = list(core.immutables)
                applying = [d for d in core.deletes if d.lsn <= lsn]
                planned = CheckpointInput(catalog, hidden, settings, pending, applying)
                next_txn = core.next_txn
            IO.crash_point("checkpoint.after_rotate")
            plan = plan_checkpoint(core.dir, core.manifest, planned, lsn, next_txn)
            IO.crash_point("checkpoint.after_segments")
            self._commit_manifest(plan.manifest, plan.written, "checkpoint.after_manifest")
            with core.write_lock:
                core.manifest = plan.manifest
                core.immutables = [m for m in core.immutables if m not in pending]
                core.hidden -= hidden
                core.deletes = [d for d in core.deletes if d.lsn > lsn]
            wal_removed = self._remove_checkpoint_wal(settings)
            IO.crash_point("checkpoint.after_wal_delete")
            IO.remove_many(core.dir / f for f in plan.obsolete_files)
            self.last_at = time.monotonic()
        if core.background and self.compaction_due():
            core.wake.set()  # the maintenance thread merges the partition's segments
        return plan.report(core.name, reason, rotated, wal_removed, time.perf_counter() - started)

    def compact(self, min_segments: int = 2) -> CompactionReport:
        """Merge the segments of every partition holding at least ``min_segments``."""
        core = self.core
        core.check_open()
        started = time.perf_counter()
        with core.ckpt_lock:
            plan = plan_compaction(core.dir, core.manifest, min_segments)
            if not plan.merged:
                return plan.report(core.name, time.perf_counter() - started)
            IO.crash_point("compact.after_segments")
            self._commit_manifest(plan.manifest, plan.written, "compact.after_manifest")
            with core.write_lock:
                core.manifest = plan.manifest
            IO.remove_many(core.dir / f for f in plan.obsolete_files)
        return plan.report(core.name, time.perf_counter() - started)

    def compaction_due(self) -> bool:
        """A partition holds more than COMPACT_TRIGGER small segments."""
        for entry in self.core.manifest.tables.values():
            per_partition: dict[int, list[SegmentInfo]] = {}
            for info in entry.segments:
                per_partition.setdefault(info.partition, []).append(info)
            if any(small_segments(infos) > COMPACT_TRIGGER for infos in per_partition.values()):
                return True
        return False

    def ensure_wal_accepts(self, types: set[wal.RecordType]) -> None:
        """The WAL version rule (``engine/log/wal.py``): a record type newer than the file
        being appended to goes into a new file, which a checkpoint starts."""
        core = self.core
        assert core.wal is not None
        if all(core.wal.accepts(t) for t in types):
            return
        self.run("WAL format upgrade")
        if not all(core.wal.accepts(t) for t in types):
            raise StorageError(
                f"database {core.name}: its WAL file is of an older format and cannot be "
                "rotated while a replica still needs it",
                hint="let the replica catch up (one shipping round), then retry",
            ).advise(Remedy.SHIP_ONCE, core.name)

    # -- deletes and retention ---------------------------------------------------------------
    def log_delete(self, spec: DeleteSpec) -> DeleteSpec:
        """Log a DELETE (fsynced, whatever the wal_level) and apply it to the memtables;
        segments follow through every read and at the next checkpoint, which the caller
        runs to rewrite them now. Returns the spec with its LSN."""
        core = self.core
        core.check_writable()
        self.ensure_wal_accepts({wal.RecordType.DELETE})
        with core.write_lock:
            lsn = core.log_standalone(wal.RecordType.DELETE, wal.encode_delete(spec.to_json()))
            logged = replace(spec, lsn=lsn)
            for memtable in core.memtables:
                deletes.apply_to_memtable(memtable, logged, core.settings.precision)
            core.deletes.append(logged)
        return logged

    def _expire_due(self) -> DeleteSpec | None:
        """Retention: log the expiry of the partitions that ended before now - retention,
        if there is data in them (a primary only: a standby takes its primary's)."""
        core = self.core
        if not core.writable or core.role != "primary" or core.broken is not None or core.fenced:
            return None
        with core.write_lock:
            spec = retention.expiry_due(core.settings, core.manifest, core.memtables)
            if spec is not None:
                self._expiring = retention.preview_expiry(
                    core.settings, core.manifest, core.memtables
                )
        return None if spec is None else self.log_delete(spec)

    def preview_expiry(self, settings: Settings) -> retention.ExpiryPreview:
        """What an expiry under ``settings`` (a retention about to be set) removes now."""
        core = self.core
        with core.write_lock:
            return retention.preview_expiry(settings, core.manifest, core.memtables)

    # -- the steps ----------------------------------------------------------------------------
    def _commit_manifest(self, manifest: Manifest, written: list[SegmentInfo], step: str) -> None:
        """Install ``manifest``, the commit point; if that fails, remove the segments written
        for it (nothing lists them), so a failed checkpoint or compaction leaves no trace."""
        try:
            manifest_format.install(self.core.dir, manifest)
        except BaseException:
            IO.remove_many(self.core.dir / s.file for s in written)
            raise
        IO.crash_point(step)

    def _nothing_to_do(self) -> bool:
        core = self.core
        return (
            core.memtable.is_empty()
            and not core.immutables
            and not core.hidden
            and not core.deletes
            and core.last_lsn == core.manifest.checkpoint_lsn
            and core.settings == core.manifest.settings
            and not (core.dir / wal.WAL_DIR / wal.CHECKPOINT).exists()
        )

    def _rotate_wal(self) -> bool:
        """current.wal -> checkpoint.wal and a fresh current.wal (under the write lock).

        If checkpoint.wal is still there (an earlier checkpoint failed), keep
        appending to current.wal: the coming manifest covers both files.
        """
        core = self.core
        assert core.wal is not None
        wal_dir = core.dir / wal.WAL_DIR
        current, previous = wal_dir / wal.CURRENT, wal_dir / wal.CHECKPOINT
        if previous.exists():
            return False
        old = core.wal
        core.commit.exclusive(
            core.last_lsn, old.fsync, lambda: self._swap_wal(old, current, previous)
        )
        return True

    def _swap_wal(self, old: wal.WalWriter, current: Path, previous: Path) -> None:
        """Close the fsynced ``current.wal``, rename it, start a new one (sync token held)."""
        core = self.core
        old.close()
        IO.rename(current, previous)
        IO.crash_point("checkpoint.after_rename")
        try:
            core.wal = core.wal_writer(current, core.last_lsn + 1, create=True)
        except BaseException:
            IO.remove(current, missing_ok=True)
            IO.rename(previous, current)
            core.wal = core.wal_writer(current, 0, create=False)
            raise

    def _remove_checkpoint_wal(self, settings: Settings) -> int:
        path = self.core.dir / wal.WAL_DIR / wal.CHECKPOINT
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
        core = self.core
        if not settings.replicas or core.role != "primary":
            return False
        assert core.wal is not None
        notices = core.replication.notices if core.replication is not None else []
        return keep_checkpoint_wal(
            core.dir,
            settings.replicas,
            path,
            core.wal.start_lsn - 1,
            settings.replica_hold_bytes,
            settings.replica_hold_age_ns / 1e9,
            notices,
        )
