"""Shipping one database's log to one replica store.

Each call of :meth:`Shipper.ship` checks the store's epoch claims first (a newer
epoch than the database's means its standby was promoted: the database is
fenced and ships nothing), finds its position (once per process: from the
newest segment or snapshot in the store, never from local memory alone), seeds
the store with a snapshot when it holds none or the WAL no longer reaches its
position, then uploads every committed record past the position as segments of
at most ``SEGMENT_BYTES``. Each segment is created with a conditional write, so
two shippers can never both extend the chain; after each one the local state
(:mod:`engine.db.replicastate`) records the new position, which lets checkpoints release WAL.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.db.replicastate import (
    ShipState,
    dropped_through,
    fenced_refusal,
    load_ship_state,
    save_ship_state,
)
from engine.errors import Corruption
from engine.io.fileio import IO
from engine.replication import layout, logsegment, storekeeping
from engine.replication.snapshots import Snapshot, in_history, snapshots_of
from engine.replication.walsource import WalGone, WalSource
from engine.settings import Settings, format_duration_ns
from engine.storage import manifest as manifest_format
from engine.stores import open_store

SEGMENT_BYTES = 8 << 20
PRUNE_EVERY = 3600.0  # the window moves on even while no snapshot is due
FENCE_CHECK_EVERY = 1.0  # an idle shipper looks for a promotion this often
# The ship state file is a hint for other processes (status, a byrl writer that does not
# own the shipping): rewritten at most this often while confirmations stream, and at
# once when shipping goes idle, on a fence, a reseed and the shipper's close.
STATE_SAVE_EVERY = 0.05
DIGEST = logsegment.DIGEST_SIZE


@dataclass
class ShipReport:
    url: str
    segments: int = 0
    records: int = 0
    rows: int = 0
    bytes: int = 0
    shipped_lsn: int = 0
    snapshot: str | None = None
    reseeded: str | None = None  # why a snapshot was taken

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fenced_message(database: str, url: str, claim: layout.EpochClaim | layout.Fence) -> str:
    return (
        f"database {database} is fenced: its standby was promoted to epoch {claim.epoch} "
        f"at {claim.claimed_at} on {claim.host} (replica {url}); writes here would be lost"
    )


class Shipper:
    def __init__(self, db_dir: Path, database: str, url: str, source: WalSource) -> None:
        self.db_dir = db_dir
        self.database = database
        self.url = url
        self.store = open_store(url)
        self.source = source
        self._position: tuple[int, bytes] | None = None  # (shipped LSN, its segment's digest)
        # the last upload not yet confirmed: (last LSN, digest, last commit ns, key)
        self._uploaded: tuple[int, bytes, int, str] | None = None
        self._known = False  # the store's identity and our epoch's claim were checked
        self._newest_snapshot: Snapshot | None = None  # upkeep's: the newest of the history
        self._pruned_at = 0.0
        self._fence_checked = 0.0
        # this process owns shipping to the store (the ship lock), so its state is the
        # state: read from disk once, kept here, written behind (see STATE_SAVE_EVERY)
        self._state: ShipState | None = None
        self._saved_at = 0.0
        self._unsaved = False

    @property
    def state(self) -> ShipState | None:
        """The position as this process knows it (newer than the file between saves)."""
        return self._state if self._state is not None else load_ship_state(self.db_dir, self.url)

    def flush_state(self) -> None:
        """Write a confirmation not yet written (idle shipping, close)."""
        if self._unsaved and self._state is not None:
            self._save(self._state)

    def _save(self, state: ShipState) -> None:
        save_ship_state(self.db_dir, state)
        self._saved_at = time.monotonic()
        self._unsaved = False

    def ship(self, uuid: str, epoch: int) -> ShipReport:
        """Upload what is committed and not yet in the store; see the module docstring."""
        report = ShipReport(self.url)
        if self._state is None:
            self._state = load_ship_state(self.db_dir, self.url) or ShipState(self.url, epoch)
        state = self._state
        if not self._known:
            epochs = layout.read_epochs(self.store)
            layout.require_database(self.store, epochs.claims, uuid)
            self.check_fence(epochs, epoch, state)
            if not any(c.epoch == epoch for c in epochs.claims):
                layout.claim_epoch(
                    self.store, layout.new_claim(uuid, epoch, 0, logsegment.NO_PREVIOUS)
                )
            self._known = True
        if self._position is None:
            claims = layout.read_claims(self.store)
            self._position = self._position_in_store(uuid, epoch, claims, state)
        if self._position is None or self._position[0] < dropped_through(self.db_dir, self.url):
            why = (
                "the store holds no snapshot"
                if self._position is None
                else ("the WAL it needed was deleted past the hold limits")
            )
            self._reseed(uuid, state, epoch, report, why)
        uploaded = False
        while True:
            assert self._position is not None
            try:
                batch = self.source.read(self._position[0] + 1, SEGMENT_BYTES)
            except WalGone as exc:
                if report.reseeded:
                    raise
                self._reseed(uuid, state, epoch, report, str(exc))
                continue
            if batch is None:
                break
            self._upload(uuid, epoch, batch, report)
            uploaded = True
        if uploaded:
            self._confirm(epoch, state)
        else:
            self.flush_state()
        if not uploaded and time.monotonic() - self._fence_checked >= FENCE_CHECK_EVERY:
            # nothing to ship: still notice a promotion (the next write is refused)
            self.check_fence(layout.read_epochs(self.store, after_epoch=epoch), epoch, state)
            self._fence_checked = time.monotonic()
        report.shipped_lsn = state.shipped_lsn
        return report

    def _confirm(self, epoch: int, state: ShipState) -> None:
        """Record what was uploaded as shipped (what byrl acknowledges and checkpoints
        release), once no newer epoch was fenced: a promotion drains the store only after
        its fence, so a segment in the store before the fence reaches the new primary,
        and one that landed after it is never confirmed. (Every promotion fences the next
        epoch first, so one object's existence is the whole check.)"""
        IO.crash_point("ship.before_confirm")
        if self.store.exists(layout.fence_key(epoch + 1)):  # every promotion fences first
            self.check_fence(layout.read_epochs(self.store, after_epoch=epoch), epoch, state)
        assert self._position is not None and self._uploaded is not None
        lsn, digest, commit_ns, key = self._uploaded
        state.epoch, state.shipped_lsn, state.previous = epoch, lsn, digest.hex()
        state.shipped_commit_ns = commit_ns or state.shipped_commit_ns
        state.shipped_at = time.time()
        state.key = key
        if time.monotonic() - self._saved_at >= STATE_SAVE_EVERY:
            self._save(state)
        else:
            self._unsaved = True

    def check_fence(self, epochs: layout.Epochs, epoch: int, state: ShipState) -> None:
        newer = epochs.newer_than(epoch)
        if newer is None:
            return
        if state.fenced is None:
            state.fenced = {
                "epoch": newer.epoch,
                "claimed_at": newer.claimed_at,
                "host": newer.host,
            }
            self._save(state)
        raise fenced_refusal(fenced_message(self.database, self.url, newer), self.database)

    def _position_in_store(
        self, uuid: str, epoch: int, claims: list[layout.EpochClaim], state: ShipState
    ) -> tuple[int, bytes] | None:
        """Where the store's chain for ``epoch`` ends: its newest segment, else the
        branch of the epoch, else the newest snapshot; None when it holds nothing."""
        best: tuple[int, bytes] | None = None
        known = state.epoch == epoch and state.key and self.store.exists(state.key)
        segments = layout.list_segments(self.store, epoch, start_after=state.key if known else "")
        if segments:
            newest = max(segments, key=lambda r: r.last_lsn)
            if newest.compacted:  # its link is its last boundary, not its digest
                where = f"{self.store.describe()}/{newest.key}"
                link = logsegment.decode(self.store.read(newest.key), where).link
            else:
                link = self.store.read_range(newest.key, newest.size - DIGEST, DIGEST)
            best = (newest.last_lsn, link)
        elif known:
            best = (state.shipped_lsn, bytes.fromhex(state.previous))
        if best is None:
            own = next((c for c in claims if c.epoch == epoch), None)
            if own is not None and own.branch_lsn:
                best = (own.branch_lsn, bytes.fromhex(own.previous or "00" * DIGEST))
        if best is None:  # a store seeded, then nothing shipped yet
            snaps = [s for s in snapshots_of(self.store, uuid) if s.epoch <= epoch]
            if snaps:
                best = (snaps[-1].lsn, logsegment.NO_PREVIOUS)
        return best

    def upkeep(
        self, uuid: str, epoch: int, settings: Settings, *, now: float | None = None
    ) -> list[str]:
        """A snapshot if one is due, then the store pruned to the point-in-time window
        (:mod:`.storekeeping`); what was done."""
        now = time.time() if now is None else now
        if self._newest_snapshot is None:
            claims = layout.read_claims(self.store)
            ours = [s for s in snapshots_of(self.store, uuid) if in_history(s, claims)]
            if not ours:
                return []  # the shipper's first round seeds the store
            self._newest_snapshot = max(ours, key=storekeeping.created_seconds)
        said = []
        why = storekeeping.snapshot_due(self.store, self._newest_snapshot, epoch, settings, now)
        if why is not None:
            report = self._take_snapshot()
            self._newest_snapshot = Snapshot(report.name, report.lsn, epoch, report.created)
            said.append(f"snapshot {report.name} at LSN {report.lsn} ({why})")
        if why is not None or now - self._pruned_at >= PRUNE_EVERY:
            pruned = storekeeping.prune_store(self.store, uuid, settings, now=now)
            self._pruned_at = now
            if pruned.snapshots_deleted or pruned.objects_deleted:
                said.append(
                    f"pruned to the {format_duration_ns(settings.replica_pitr_window_ns)} "
                    f"window: {pruned.snapshots_deleted} snapshot(s) and "
                    f"{pruned.objects_deleted} log object(s) ({pruned.bytes_deleted:,} bytes) "
                    "deleted"
                )
        merged = storekeeping.compact_log(self.store, now=now)
        if merged:
            said.append(f"compacted {merged} log segments")
        return said

    def _take_snapshot(self) -> Snapshot:
        from engine.archive.backup import BackupOptions, create_backup

        backup = create_backup(
            self.db_dir.parent,
            self.database,
            BackupOptions(to=layout.child_url(self.url, layout.SNAPSHOTS), record=False),
        )
        name = backup.archive.rsplit("/", 1)[-1]
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return Snapshot(name, backup.snapshot_lsn, 0, created)

    def snapshot(self, epoch: int | None = None) -> str:
        """Upload a snapshot now (a later starting point for restores and new standbys);
        the log goes on as it was."""
        epoch = manifest_format.load(self.db_dir).epoch if epoch is None else epoch
        snap = self._take_snapshot()
        self._newest_snapshot = Snapshot(snap.name, snap.lsn, epoch, snap.created)
        return snap.name

    def _reseed(
        self, uuid: str, state: ShipState, epoch: int, report: ShipReport, why: str
    ) -> None:
        """A fresh snapshot: the log takes over from its LSN. The WAL after the current
        checkpoint is pinned first, so the records after the snapshot are still there.
        A store that held a position before gets a reseed marker, so a standby behind it
        knows at once that the log will never continue it."""
        from engine.archive.backup import BackupOptions, create_backup

        lost_after = self._position[0] if self._position is not None else None
        state.epoch = epoch
        state.shipped_lsn = manifest_format.load(self.db_dir).checkpoint_lsn
        state.previous = ""
        self._save(state)
        backup = create_backup(
            self.db_dir.parent,
            self.database,
            BackupOptions(to=layout.child_url(self.url, layout.SNAPSHOTS), record=False),
        )
        name = backup.archive.rsplit("/", 1)[-1]
        IO.crash_point("ship.reseed_before_marker")
        if lost_after is not None:
            layout.write_reseed(
                self.store,
                layout.ReseedMarker(
                    uuid=uuid,
                    epoch=epoch,
                    lsn=backup.snapshot_lsn,
                    lost_after=lost_after,
                    snapshot=name,
                    at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    reason=why,
                ),
            )
        self._position = (backup.snapshot_lsn, logsegment.NO_PREVIOUS)
        self._uploaded = None
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._newest_snapshot = Snapshot(name, backup.snapshot_lsn, epoch, created)
        state.shipped_lsn = backup.snapshot_lsn
        state.key = ""
        self._save(state)
        report.snapshot, report.reseeded = name, why

    def _upload(self, uuid: str, epoch: int, batch: Any, report: ShipReport) -> None:
        assert self._position is not None
        data = logsegment.encode(
            uuid,
            epoch,
            batch.records,
            rows=batch.rows,
            first_commit_ns=batch.first_commit_ns,
            last_commit_ns=batch.last_commit_ns,
            previous=self._position[1],
        )
        key = logsegment.object_key(epoch, batch.first_lsn, batch.last_lsn)
        IO.crash_point("ship.before_upload")
        if not self.store.write_if_absent(key, data) and self.store.read(key) != data:
            raise Corruption(
                f"{self.store.describe()}/{key} exists with other contents: another primary "
                "ships to this store",
                hint="give each database a store of its own",
                path=key,
            )
        IO.crash_point("ship.after_upload")
        self._position = (batch.last_lsn, data[-DIGEST:])
        self._uploaded = (batch.last_lsn, data[-DIGEST:], batch.last_commit_ns, key)
        report.segments += 1
        report.records += len(batch.records)
        report.rows += batch.rows
        report.bytes += len(data)
