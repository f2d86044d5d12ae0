"""The snapshots a replica store holds: ordinary archives under ``snapshots/``, each of
one database (by UUID) at one LSN of one epoch; those a fenced primary took past its
epoch's branch are not part of the history."""

from __future__ import annotations

from dataclasses import dataclass

from engine.archive.store import archive_names, read_manifest
from engine.errors import Corruption, NotFound, VerificationFailed
from engine.replication import layout
from engine.stores import Store


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


def in_history(snap: Snapshot, claims: list[layout.EpochClaim]) -> bool:
    """A snapshot a fenced primary took past its epoch's branch is not history."""
    for claim, last in layout.history(claims):
        if claim.epoch == snap.epoch:
            return last is None or snap.lsn <= last
    return False


def usable_snapshots(store: Store, claims: list[layout.EpochClaim]) -> list[Snapshot]:
    """The snapshots of the store's history (see :func:`in_history`), oldest first."""
    if not claims:
        return []
    return [s for s in snapshots_of(store, claims[0].uuid) if in_history(s, claims)]
