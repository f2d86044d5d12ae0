"""Shipping one database's log to one replica store.

Each call of :meth:`Shipper.ship` checks the store's epoch claims first (a newer
epoch than the database's means its standby was promoted: the database is
fenced and ships nothing), finds its position (once per process: from the
newest segment or snapshot in the store, never from local memory alone), seeds
the store with a snapshot when it holds none or the WAL no longer reaches its
position, then uploads every committed record past the position as segments of
at most ``SEGMENT_BYTES``. Each segment is created with a conditional write, so
two shippers can never both extend the chain; after each one the local state
(:mod:`.state`) records the new position, which lets checkpoints release WAL.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine import logsegment
from engine import manifest as manifest_format
from engine.archivestore import archive_names, read_manifest
from engine.errors import Corruption, NotFound, VerificationFailed, WritesRefused
from engine.fileio import IO
from engine.replication import layout
from engine.replication.state import (
    ShipState,
    dropped_through,
    load_ship_state,
    save_ship_state,
)
from engine.replication.walsource import WalGone, WalSource
from engine.stores import Store, open_store

SEGMENT_BYTES = 8 << 20
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


@dataclass(frozen=True)
class Snapshot:
    name: str
    lsn: int
    epoch: int
    created: str = ""  # UTC, ISO 8601: every commit it holds is older


def snapshots_of(store: Store, uuid: str) -> list[Snapshot]:
    """The store's snapshots of database ``uuid``, oldest first (by LSN)."""
    snaps = store.child(layout.SNAPSHOTS)
    out = []
    for name in archive_names(snaps):
        try:
            manifest, _ = read_manifest(snaps, name)
        except (VerificationFailed, NotFound, Corruption):
            continue  # a damaged snapshot is never used; backup verify names it
        if manifest.uuid == uuid and manifest.kind == "database" and manifest.base is None:
            out.append(Snapshot(name, manifest.snapshot_lsn, manifest.epoch or 1, manifest.created))
    return sorted(out, key=lambda s: s.lsn)


def fenced_message(database: str, url: str, claim: layout.EpochClaim) -> str:
    return (
        f"database {database} is fenced: its standby was promoted to epoch {claim.epoch} "
        f"at {claim.claimed_at} on {claim.host} (replica {url}); writes here would be lost"
    )


FENCED_HINT = (
    "write to the new primary; to bring this site back, follow the new primary into a "
    "fresh database ('tsadmin follow URL --db NAME') and drop this one"
)


class Shipper:
    def __init__(self, db_dir: Path, database: str, url: str, source: WalSource) -> None:
        self.db_dir = db_dir
        self.database = database
        self.url = url
        self.store = open_store(url)
        self.source = source
        self._position: tuple[int, bytes] | None = None  # (shipped LSN, its segment's digest)

    def ship(self, uuid: str, epoch: int) -> ShipReport:
        """Upload what is committed and not yet in the store; see the module docstring."""
        report = ShipReport(self.url)
        state = load_ship_state(self.db_dir, self.url) or ShipState(self.url, epoch)
        claims = layout.read_claims(self.store)
        layout.require_database(self.store, claims, uuid)
        self._check_fence(claims, epoch, state)
        if not any(c.epoch == epoch for c in claims):
            layout.claim_epoch(self.store, layout.new_claim(uuid, epoch, 0, logsegment.NO_PREVIOUS))
        if self._position is None:
            self._position = self._position_in_store(uuid, epoch, claims, state)
        if self._position is None or self._position[0] < dropped_through(self.db_dir, self.url):
            why = (
                "the store holds no snapshot"
                if self._position is None
                else ("the WAL it needed was deleted past the hold limits")
            )
            self._reseed(state, epoch, report, why)
        while True:
            assert self._position is not None
            try:
                batch = self.source.read(self._position[0] + 1, SEGMENT_BYTES)
            except WalGone as exc:
                if report.reseeded:
                    raise
                self._reseed(state, epoch, report, str(exc))
                continue
            if batch is None:
                break
            self._upload(uuid, epoch, batch, state, report)
        report.shipped_lsn = self._position[0] if self._position else 0
        return report

    def _check_fence(self, claims: list[layout.EpochClaim], epoch: int, state: ShipState) -> None:
        newer = [c for c in claims if c.epoch > epoch]
        if not newer:
            return
        claim = newer[0]
        if state.fenced is None:
            state.fenced = {
                "epoch": claim.epoch,
                "claimed_at": claim.claimed_at,
                "host": claim.host,
            }
            save_ship_state(self.db_dir, state)
        raise WritesRefused(fenced_message(self.database, self.url, claim), hint=FENCED_HINT)

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
            tail = self.store.read_range(newest.key, newest.size - DIGEST, DIGEST)
            best = (newest.last_lsn, tail)
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

    def snapshot(self) -> str:
        """Upload a snapshot now (a later starting point for restores and new standbys);
        the log goes on as it was."""
        from engine.backup import BackupOptions, create_backup

        backup = create_backup(
            self.db_dir.parent,
            self.database,
            BackupOptions(to=layout.child_url(self.url, layout.SNAPSHOTS)),
        )
        return backup.archive.rsplit("/", 1)[-1]

    def _reseed(self, state: ShipState, epoch: int, report: ShipReport, why: str) -> None:
        """A fresh snapshot: the log takes over from its LSN. The WAL after the current
        checkpoint is pinned first, so the records after the snapshot are still there."""
        from engine.backup import BackupOptions, create_backup

        state.epoch = epoch
        state.shipped_lsn = manifest_format.load(self.db_dir).checkpoint_lsn
        state.previous = ""
        save_ship_state(self.db_dir, state)
        backup = create_backup(
            self.db_dir.parent,
            self.database,
            BackupOptions(to=layout.child_url(self.url, layout.SNAPSHOTS)),
        )
        name = backup.archive.rsplit("/", 1)[-1]
        self._position = (backup.snapshot_lsn, logsegment.NO_PREVIOUS)
        state.shipped_lsn = backup.snapshot_lsn
        save_ship_state(self.db_dir, state)
        report.snapshot, report.reseeded = name, why

    def _upload(
        self, uuid: str, epoch: int, batch: Any, state: ShipState, report: ShipReport
    ) -> None:
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
        state.epoch, state.shipped_lsn, state.previous = epoch, batch.last_lsn, data[-DIGEST:].hex()
        state.shipped_commit_ns = batch.last_commit_ns or state.shipped_commit_ns
        state.shipped_at = time.time()
        state.key = key
        save_ship_state(self.db_dir, state)
        report.segments += 1
        report.records += len(batch.records)
        report.rows += batch.rows
        report.bytes += len(data)
