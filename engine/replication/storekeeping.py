"""Keeping a replica store small: periodic snapshots and the point-in-time window.

A primary's shipper takes a fresh snapshot of the database into the store once
``replica_snapshot_interval`` has passed since the newest one, or once
``replica_snapshot_bytes`` of log were shipped past it, whichever comes first
(and never while nothing was shipped since). A restore replays the log from the
newest snapshot at or before its target, so its cost is bounded by those two
settings, not by the age of the store.

After a snapshot the store is pruned to what a restore to any moment of the last
``replica_pitr_window`` needs:

* every snapshot created inside the window (those older than a day thinned to
  the newest of each UTC day, and the oldest one inside), the newest one created
  before the window starts (a restore to the window's first moment starts from
  it), and always the newest;
* every log segment and reseed marker past the oldest snapshot kept (in its
  epoch, and every later epoch); the log before it, and earlier epochs' log,
  are deleted, as are snapshots of a fenced primary (not history) past the window;
* objects of snapshots whose upload was killed (no manifest), once older than
  the grace period backup prune uses.

A standby positioned before the oldest snapshot kept finds its next segment gone
and rebuilds from a snapshot (:mod:`.standby`); nothing else ever reads the log
before it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from engine.archive import store as archivestore
from engine.errors import Corruption, NotFound
from engine.replication import layout, logsegment
from engine.replication.snapshots import Snapshot, in_history, snapshots_of
from engine.settings import Settings, tunable
from engine.stores import Store

DAY = 86400.0


@dataclass
class PruneReport:
    snapshots_kept: int = 0
    snapshots_deleted: int = 0
    objects_deleted: int = 0
    bytes_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def created_seconds(snap: Snapshot) -> float:
    try:
        return datetime.fromisoformat(snap.created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def snapshot_due(
    store: Store, newest: Snapshot | None, epoch: int, settings: Settings, now: float
) -> str | None:
    """Why a snapshot is due now (None: it is not): the interval passed, or enough log
    was shipped past the newest snapshot."""
    if newest is None:
        return "the store holds no snapshot"
    shipped = [
        r
        for r in layout.list_segments(store, epoch)
        if epoch > newest.epoch or r.last_lsn > newest.lsn
    ]
    if not shipped:
        return None
    log_bytes = sum(r.size for r in shipped)
    if log_bytes >= settings.replica_snapshot_bytes:
        return f"{log_bytes:,} bytes of log shipped since snapshot {newest.name}"
    age = now - created_seconds(newest)
    if age >= settings.replica_snapshot_interval_ns / 1e9:
        return f"snapshot {newest.name} is {age:.0f}s old"
    return None


def snapshots_to_keep(snaps: list[Snapshot], window_s: float, now: float) -> set[str]:
    """The names of the snapshots the point-in-time window needs (module docstring)."""
    if not snaps:
        return set()
    ordered = sorted(snaps, key=created_seconds)
    start = now - window_s
    inside = [s for s in ordered if created_seconds(s) >= start]
    before = [s for s in ordered if created_seconds(s) < start]
    keep = {s.name for s in inside if created_seconds(s) >= now - DAY}
    newest_of_day: dict[str, Snapshot] = {}
    for snap in inside:
        if created_seconds(snap) < now - DAY:
            day = datetime.fromtimestamp(created_seconds(snap), UTC).date().isoformat()
            newest_of_day[day] = snap  # ordered by time: the last one wins
    keep |= {s.name for s in newest_of_day.values()}
    if inside:  # so a target early on the window's first day has a snapshot before it
        keep.add(inside[0].name)
    if before:
        keep.add(before[-1].name)
    keep.add(ordered[-1].name)
    return keep


def prune_store(
    store: Store,
    uuid: str,
    settings: Settings,
    *,
    now: float | None = None,
    grace_seconds: float = archivestore.GRACE_SECONDS,
) -> PruneReport:
    """Delete what the point-in-time window does not need (module docstring)."""
    now = time.time() if now is None else now
    report = PruneReport()
    claims = layout.read_claims(store)
    every = snapshots_of(store, uuid)
    history = [s for s in every if in_history(s, claims)]
    keep = snapshots_to_keep(history, settings.replica_pitr_window_ns / 1e9, now)
    report.snapshots_kept = len(keep)
    if not keep:
        return report
    window_start = now - settings.replica_pitr_window_ns / 1e9
    snapshots = store.child(layout.SNAPSHOTS)
    for snap in every:
        junk = snap not in history and created_seconds(snap) < window_start
        if (snap in history and snap.name not in keep) or junk:
            archivestore.delete_archive(snapshots, snap.name)
            report.snapshots_deleted += 1
    oldest = min((s for s in history if s.name in keep), key=lambda s: (s.epoch, s.lsn))
    for info in list(store.list(layout.LOG)):
        if _before(info.key, oldest):
            store.delete(info.key)
            report.objects_deleted += 1
            report.bytes_deleted += info.size
    for name in archivestore.unreferenced(snapshots, grace_seconds):
        archivestore.delete_unreferenced(snapshots, name)
    return report


def _before(key: str, oldest: Snapshot) -> bool:
    """Whether the log object ``key`` lies wholly before snapshot ``oldest``."""
    segment = logsegment.parse_key(key)
    if segment is not None:
        epoch, _first, last = segment
    else:
        marker = layout.parse_reseed_key(key)
        if marker is None:
            return False
        epoch, last = marker
    return epoch < oldest.epoch or (epoch == oldest.epoch and last <= oldest.lsn)


@dataclass
class StoreSummary:
    bytes: int
    objects: int
    snapshots: int
    oldest_restorable: str | None  # UTC, ISO 8601: the oldest snapshot's creation
    newest_snapshot: str | None


def summarize(store: Store, uuid: str) -> StoreSummary:
    """What ``replica status`` says of a store: its size and what it can restore."""
    total, count = 0, 0
    for info in store.list():
        total += info.size
        count += 1
    claims = layout.read_claims(store)
    snaps = [s for s in snapshots_of(store, uuid) if in_history(s, claims)]
    ordered = sorted(snaps, key=created_seconds)
    return StoreSummary(
        bytes=total,
        objects=count,
        snapshots=len(snaps),
        oldest_restorable=ordered[0].created if ordered else None,
        newest_snapshot=ordered[-1].created if ordered else None,
    )


# -- compaction of the log ------------------------------------------------------------------

# Segments are merged once they are this old (a follower at the live edge has read
# them), into objects of at most this many bytes.
COMPACT_BYTES = 64 << 20


def compact_log(store: Store, *, now: float | None = None, age: float | None = None) -> int:
    """Merge runs of consecutive segments older than ``age`` into compacted segments
    (``engine/replication/logsegment.py``); how many segments were merged away. Never the newest
    segment of the open epoch (the shipper links to it), never past an epoch's branch,
    never an epoch whose successor's branch is not known yet (a promotion under way).
    ``age`` defaults to ``TSADMIN_COMPACT_AGE`` seconds, else 60."""
    now = time.time() if now is None else now
    age = tunable("TSADMIN_COMPACT_AGE", 60.0) if age is None else age
    epochs = layout.read_epochs(store)
    pending = epochs.pending()
    merged = 0
    for claim, last in layout.history(epochs.claims):
        if pending is not None and pending.epoch == claim.epoch + 1:
            continue
        refs = layout.list_segments(store, claim.epoch)
        refs = refs[:-1] if last is None else [r for r in refs if r.last_lsn <= last]
        for run in _runs(refs, now - age):
            merged += _merge(store, run)
    return merged


def _runs(refs: list[layout.SegmentRef], before: float) -> list[list[layout.SegmentRef]]:
    """Chains of consecutive segments all written before ``before``, each at most
    ``COMPACT_BYTES`` and of two or more segments."""
    runs: list[list[layout.SegmentRef]] = []
    current: list[layout.SegmentRef] = []
    for ref in refs:
        eligible = ref.modified < before
        continues = bool(current) and (
            ref.first_lsn == current[-1].last_lsn + 1
            and sum(r.size for r in current) + ref.size <= COMPACT_BYTES
        )
        if eligible and (continues or not current):
            current.append(ref)
            continue
        if len(current) > 1:
            runs.append(current)
        current = [ref] if eligible else []
    if len(current) > 1:
        runs.append(current)
    return runs


def _merge(store: Store, run: list[layout.SegmentRef]) -> int:
    """One compacted segment for ``run``, then the run deleted; 0 if the run is not one
    chain (damage is the followers' to report, not ours to paper over)."""
    segments: list[logsegment.Segment] = []
    for ref in run:
        try:
            segment = logsegment.decode(store.read(ref.key), f"{store.describe()}/{ref.key}")
        except (NotFound, Corruption):
            return 0
        if segments and segment.header.previous != segments[-1].link:
            return 0
        segments.append(segment)
    data = logsegment.merge(segments)
    key = logsegment.object_key(run[0].epoch, run[0].first_lsn, run[-1].last_lsn, compacted=True)
    if not store.write_if_absent(key, data) and store.read(key) != data:
        return 0
    for ref in run:
        store.delete(ref.key)
    return len(run)
