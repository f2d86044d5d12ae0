"""Point-in-time restore from a replica store: a snapshot plus the log up to a target.

The target is an LSN or a commit time. The newest snapshot of the history at or
before it is chosen (by LSN; for a time, one created at or before it), every
segment from the snapshot to the target is downloaded and checked (digests,
records, links, no gap) before anything is written, and the target must lie
within the shipped log. The database is then built under a hidden name beside
the data dir's databases: the snapshot restored, the records replayed up to the
last transaction at or before the target (a target inside a transaction stops
before it), checkpointed, given an identity of its own, and renamed into place.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.db.database import Database
from engine.db.datadir import clear_leftovers, database_dir, ensure_data_dir
from engine.db.replicastate import STANDBY
from engine.errors import AlreadyExists, InvalidArgument
from engine.io import scratch
from engine.io.fileio import IO
from engine.log import wal, walkinds
from engine.log.txn import commit_of
from engine.names import validate_name
from engine.replication import layout, logsegment
from engine.replication.snapshots import Snapshot, usable_snapshots
from engine.replication.standby import Follower, check_link, fetch_segment, next_segment
from engine.storage import manifest as manifest_format
from engine.stores import open_store


@dataclass
class PitrReport:
    database: str
    store: str
    snapshot: str
    snapshot_lsn: int
    target: str
    reached_lsn: int
    reached_commit_ns: int
    segments: int
    records: int
    rows: int
    dry_run: bool
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


FUTURE_SLACK_NS = 5_000_000_000  # clocks of two sites may differ a little


@dataclass
class _Planned:
    path: Path  # the segment's bytes, downloaded and checked
    keep: int  # records of it to apply (a prefix)
    where: str


def restore_to_point(
    data_dir: Path,
    url: str,
    name: str,
    *,
    to_lsn: int | None = None,
    to_time_ns: int | None = None,
    dry_run: bool = False,
) -> PitrReport:
    if (to_lsn is None) == (to_time_ns is None):
        raise InvalidArgument("give one target: an LSN or a time", param="target")
    started = time.perf_counter()
    data_dir = data_dir if dry_run else ensure_data_dir(data_dir)
    validate_name("database", name)
    if database_dir(data_dir, name).exists():
        raise AlreadyExists(
            f"database {name} exists", hint="restore to a point in time under a new name"
        )
    store = open_store(url)
    claims = layout.read_claims(store)
    layout.require_replica(store, claims)
    snap = _choose_snapshot(store, claims, to_lsn, to_time_ns)
    with scratch.scratch("pitr") as work:
        plan, reached, reached_ns, records, rows = _plan(
            store, claims, snap, work, to_lsn, to_time_ns
        )
        if not dry_run:
            _build(data_dir, url, name, snap, plan)
    target = f"LSN {to_lsn}" if to_lsn is not None else f"time {_iso(to_time_ns or 0)}"
    return PitrReport(
        database=name,
        store=store.describe(),
        snapshot=snap.name,
        snapshot_lsn=snap.lsn,
        target=target,
        reached_lsn=reached,
        reached_commit_ns=reached_ns,
        segments=len(plan),
        records=records,
        rows=rows,
        dry_run=dry_run,
        seconds=time.perf_counter() - started,
        notes=_notes(store, reached, reached_ns, to_time_ns),
    )


def _notes(store: Any, reached: int, reached_ns: int, to_time_ns: int | None) -> list[str]:
    if to_time_ns is None or reached_ns >= to_time_ns:
        return []
    last = _iso(reached_ns) if reached_ns else "the snapshot"
    return [
        f"the log in {store.describe()} ends at {last} (LSN {reached}): this is every commit "
        "shipped by the target time; a commit the primary made later and had not shipped is "
        "not in the store"
    ]


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9).astimezone().isoformat()


def _choose_snapshot(
    store: Any, claims: list[layout.EpochClaim], to_lsn: int | None, to_time_ns: int | None
) -> Snapshot:
    snaps = usable_snapshots(store, claims)
    if to_lsn is not None:
        fit = [s for s in snaps if s.lsn <= to_lsn]
    else:
        assert to_time_ns is not None
        fit = [s for s in snaps if _created_ns(s.created) <= to_time_ns]
    if not fit:
        target = f"LSN {to_lsn}" if to_lsn is not None else _iso(to_time_ns or 0)
        oldest = f" (the oldest is at LSN {snaps[0].lsn}, {snaps[0].created})" if snaps else ""
        raise InvalidArgument(
            f"{store.describe()} holds no snapshot at or before {target}{oldest}",
            hint="choose a later target",
            param="target",
        )
    return fit[-1]


def _created_ns(created: str) -> int:
    try:
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return 1 << 62  # unreadable: never chosen for a time target


def _plan(
    store: Any,
    claims: list[layout.EpochClaim],
    snap: Snapshot,
    scratch: Path,
    to_lsn: int | None,
    to_time_ns: int | None,
) -> tuple[list[_Planned], int, int, int, int]:
    """Download and check the chain from ``snap`` to the target; nothing is written."""
    plan: list[_Planned] = []
    applied, previous, epoch = snap.lsn, "", snap.epoch
    reached_ns, records, rows = 0, 0, 0
    history = layout.history(claims)
    listed: dict[int, list[layout.SegmentRef]] = {}  # one listing per epoch
    while True:
        if to_lsn is not None and applied >= to_lsn:  # the snapshot is the target's state
            return plan, applied, reached_ns, records, rows
        limit = next((last for c, last in history if c.epoch == epoch), None)
        if limit is not None and applied >= limit:
            epoch = next(c.epoch for c in claims if c.epoch > epoch)
            continue
        if epoch not in listed:
            listed[epoch] = layout.list_segments(store, epoch)
        ref = next_segment(listed[epoch], applied, previous == "", limit)
        if ref is None:
            break
        segment, data = fetch_segment(store, ref)
        where = f"{store.describe()}/{ref.key}"
        check_link(segment, where, claims[0].uuid, epoch, previous, applied)
        keep, done = _cut(segment, applied, to_lsn, to_time_ns)
        if keep:
            path = scratch / f"{len(plan):08d}.tslog"
            path.write_bytes(data)
            plan.append(_Planned(path, keep, where))
            kept = segment.records[:keep]
            fresh = [r for r in kept if r.lsn > applied]
            records += len(fresh)
            for commit in filter(None, map(commit_of, fresh)):
                rows += commit.rows
                reached_ns = commit.time_ns or reached_ns
            applied = wal.next_lsn_after(kept[-1]) - 1
        if done:
            return plan, applied, reached_ns, records, rows
        previous = segment.link.hex()
        if keep < len(segment.records):
            break
    _refuse_beyond(store, applied, reached_ns, to_lsn, to_time_ns)
    return plan, applied, reached_ns, records, rows


def _cut(
    segment: logsegment.Segment, applied: int, to_lsn: int | None, to_time_ns: int | None
) -> tuple[int, bool]:
    """(how many of the segment's records to apply, whether the target is reached)."""
    keep = 0
    for index, record in enumerate(segment.records):
        end = wal.next_lsn_after(record) - 1
        if to_lsn is not None and end > to_lsn:
            return keep, True
        commit = commit_of(record) if to_time_ns is not None else None
        if commit is not None and to_time_ns is not None and (commit.time_ns or 0) > to_time_ns:
            return keep, True
        if walkinds.ends_unit(record):
            keep = index + 1
    if to_lsn is not None and segment.header.last_lsn == to_lsn:
        return keep, True
    return keep, False


def _refuse_beyond(
    store: Any, applied: int, reached_ns: int, to_lsn: int | None, to_time_ns: int | None
) -> None:
    if to_lsn is not None:
        raise InvalidArgument(
            f"LSN {to_lsn} is beyond the log shipped to {store.describe()}, which ends at "
            f"LSN {applied}",
            hint=f"choose an LSN up to {applied}",
            param="target",
        )
    if (to_time_ns or 0) <= time.time_ns() + FUTURE_SLACK_NS:
        return  # the latest state, as of a time already past: the report says where it ends
    raise InvalidArgument(
        f"time {_iso(to_time_ns or 0)} is in the future: the log shipped to "
        f"{store.describe()} cannot hold commits made after now",
        hint="choose a time up to now (the latest state: now)",
        param="target",
    )


def _build(data_dir: Path, url: str, name: str, snap: Snapshot, plan: list[_Planned]) -> None:
    clear_leftovers(data_dir)
    scratch = data_dir / f".{name}.restoring.{os.getpid()}"
    IO.remove_tree(scratch)
    IO.mkdirs(scratch)
    try:
        follower = Follower(scratch, url, name)
        follower.seed(snap)
        db = Database.open(follower.db_dir, name, role="standby", background=False)
        try:
            for item in plan:
                segment = logsegment.decode(item.path.read_bytes(), item.where)
                db.apply_shipped(segment.records[: item.keep])
            db.checkpoint("restore to a point in time")
        finally:
            db.abandon()
        _give_own_identity(follower.db_dir, name)
        IO.crash_point("pitr.before_rename")
        IO.rename_new(follower.db_dir, database_dir(data_dir, name))
    finally:
        IO.remove_tree(scratch)


def _give_own_identity(db_dir: Path, name: str) -> None:
    """The restored database is a copy, not the primary: a new UUID, epoch 1, no replica
    stores, no standby role; its WAL starts afresh after the checkpoint."""
    manifest = manifest_format.load(db_dir)
    manifest.uuid, manifest.epoch = manifest_format.new_identity()
    manifest.settings = manifest.settings.detached()
    wal_dir = db_dir / wal.WAL_DIR
    IO.remove_many(wal.wal_files(wal_dir))
    writer = wal.WalWriter(
        wal_dir / wal.CURRENT,
        name,
        manifest.checkpoint_lsn + 1,
        create=True,
        uuid=manifest.uuid,
        epoch=manifest.epoch,
    )
    writer.close()
    manifest_format.install(db_dir, manifest)
    IO.remove(db_dir / STANDBY)
