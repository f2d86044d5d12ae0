"""The standby: follow a replica store, and promote.

``follow``: a standby is built from the newest snapshot of the store (an
ordinary archive, restored keeping the primary's identity, with the snapshot's
LSN as its checkpoint LSN) and then applies the log segments that continue it,
in LSN order, each one checked first (its digest and records, its header
against its key, the database, the epoch, and its link to the segment before).
The records are appended to the standby's own WAL verbatim, so the standby's
log is its primary's, and ``standby.json`` records the position after each
segment. A crash between the two re-applies that segment, which changes
nothing: records at or below the standby's last LSN are skipped.

A gap (a segment missing while later ones exist), a damaged segment or an
object that does not link is never skipped: following stops and names it. A
gap that a newer snapshot covers (the primary was reseeded past it) rebuilds
the standby from that snapshot, and the report says so.

``promote``: stops the follower, applies what the store holds up to the last
contiguous LSN, claims the next epoch with a conditional create (of two
standbys promoted at once, one wins), then makes the database a primary that
ships to the same store under its new epoch.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import archive, archivestore, logsegment
from engine.backup import chain, effective_files
from engine.database import Database
from engine.datadir import database_dir, require_data_dir
from engine.errors import (
    AlreadyExists,
    Corruption,
    EngineError,
    InvalidArgument,
    Locked,
    NotFound,
)
from engine.fileio import IO
from engine.lock import holder_pid
from engine.replication import layout
from engine.replication.shipper import Snapshot, snapshots_of
from engine.replication.state import (
    STANDBY,
    ShipState,
    StandbyState,
    encode_standby,
    load_standby,
    save_ship_state,
    save_standby,
)
from engine.restore import build_database
from engine.stores import Store, open_store


@dataclass
class FollowReport:
    database: str
    source: str
    epoch: int = 0
    applied_lsn: int = 0
    applied_commit_ns: int = 0
    segments: int = 0
    rows: int = 0
    seeded_from: str | None = None
    behind_records: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Gap(Corruption):
    """Segments are missing from the store between the standby's position and the next
    segment present."""


def _where(store: Store, key: str) -> str:
    return f"{store.describe()}/{key}"


def read_segment(store: Store, ref: layout.SegmentRef) -> logsegment.Segment:
    return fetch_segment(store, ref)[0]


def fetch_segment(store: Store, ref: layout.SegmentRef) -> tuple[logsegment.Segment, bytes]:
    """Download and check one segment, its header against its key too; with its bytes."""
    where = _where(store, ref.key)
    data = store.read(ref.key)
    segment = logsegment.decode(data, where)
    head = segment.header
    if (head.epoch, head.first_lsn, head.last_lsn) != (ref.epoch, ref.first_lsn, ref.last_lsn):
        raise Corruption(
            f"log segment {where}: its header says epoch {head.epoch}, LSNs "
            f"{head.first_lsn}-{head.last_lsn}, not what its name says",
            path=where,
        )
    return segment, data


def next_segment(
    refs: list[layout.SegmentRef], applied: int, after_snapshot: bool, limit: int | None
) -> layout.SegmentRef | None:
    """The segment that continues a chain at ``applied``: one starting right after it
    (the shortest, if a longer one overlaps it: the chain's links run through the
    shortest cut, a longer object is a re-upload), or right after a snapshot one that
    covers ``applied + 1``. Ones at or below ``applied`` are duplicates, ones past
    ``limit`` (a fenced primary's) not history; both are ignored. Raises :class:`Gap`
    when only later segments exist."""
    live = [r for r in refs if r.last_lsn > applied and (limit is None or r.first_lsn <= limit)]
    exact = [r for r in live if r.first_lsn == applied + 1]
    if after_snapshot:
        exact += [r for r in live if r.first_lsn <= applied + 1]
    if exact:
        return min(exact, key=lambda r: r.last_lsn)
    later = [r for r in live if r.first_lsn > applied + 1]
    if later:
        first = min(later, key=lambda r: r.first_lsn)
        raise Gap(
            f"the log misses LSNs {applied + 1} to {first.first_lsn - 1}: no segment "
            f"starts at {applied + 1} (the next one is {first.key})",
            hint="the primary reseeds a replica it could not ship to: follow again into a "
            "new database once a newer snapshot is there",
            path=first.key,
        )
    return None


def check_link(
    segment: logsegment.Segment, where: str, uuid: str, epoch: int, previous: str
) -> None:
    head = segment.header
    problem = None
    if head.uuid != uuid:
        problem = f"it is of database {head.uuid}, not {uuid}"
    elif head.epoch != epoch:
        problem = f"it is of epoch {head.epoch}, not {epoch}"
    elif previous and head.previous.hex() != previous:
        problem = "its link to the segment before does not match (another history)"
    if problem:
        raise Corruption(f"log segment {where}: {problem}", path=where)


class Follower:
    """Keeps standby ``name`` of ``data_dir`` up with the store at ``url``."""

    def __init__(self, data_dir: Path, url: str, name: str) -> None:
        self.data_dir = require_data_dir(data_dir)
        self.url = url
        self.name = name
        self.store = open_store(url)
        self.db_dir = database_dir(self.data_dir, name)
        self.report = FollowReport(name, url)
        self._listed_after = ""
        self.rebuild_on_gap = True  # promote stops at a gap instead
        # promote stays in the epoch it found: a newer one means another standby won
        self.switch_epochs = True

    # -- seeding ----------------------------------------------------------------------
    def seed_if_missing(self) -> None:
        if self.db_dir.exists():
            state = load_standby(self.db_dir)
            if state is None:
                raise AlreadyExists(
                    f"database {self.name} exists and is not a standby",
                    hint="follow into a new database name",
                )
            if state.source != self.url:
                raise InvalidArgument(
                    f"database {self.name} is a standby of {state.source}, not {self.url}"
                )
            return
        claims = layout.read_claims(self.store)
        layout.require_replica(self.store, claims)
        snaps = snapshots_of(self.store, claims[0].uuid)
        if not snaps:
            raise layout_missing_snapshot(self.store)
        self.seed(snaps[-1])

    def seed(self, snap: Snapshot) -> None:
        """Build the standby from ``snap`` (replacing the database if it exists)."""
        snapshots = self.store.child(layout.SNAPSHOTS)
        with archivestore.fetched(snapshots, snap.name) as archive_dir:
            links = chain(archive_dir)
            for path, link in links:
                archive.require_sound(path, link)
            own = links[-1][1]
            state = StandbyState(
                source=self.url,
                uuid=own.uuid,
                epoch=own.epoch or 1,
                applied_lsn=own.snapshot_lsn,
                snapshot=snap.name,
                snapshot_lsn=own.snapshot_lsn,
            )
            build_database(
                self.data_dir,
                self.name,
                own.settings,
                effective_files(links),
                uuid=own.uuid,
                epoch=own.epoch or 1,
                lsn=own.snapshot_lsn,
                extra={STANDBY: encode_standby(state)},
            )
        self.report.seeded_from = snap.name
        self._listed_after = ""

    # -- applying -------------------------------------------------------------------------
    def open(self) -> Database:
        return Database.open(self.db_dir, self.name, role="standby")

    def catch_up(self, db: Database, *, stop_at_gap: bool = False) -> int:
        """Apply every segment the store holds that continues the standby; segments applied."""
        applied = 0
        while True:
            try:
                count = self.step(db)
            except Gap:
                if stop_at_gap:
                    return applied
                raise
            if count == 0:
                return applied
            applied += count

    def step(self, db: Database) -> int:
        """One listing of the store and the segments it offers; how many were applied."""
        state = self._state()
        claims = layout.read_claims(self.store)
        layout.require_replica(self.store, claims)
        if claims[0].uuid != state.uuid:
            raise Corruption(
                f"{self.store.describe()} replicates database {claims[0].uuid}, "
                f"standby {self.name} is of {state.uuid}"
            )
        limit = self._epoch_limit(claims, db)
        state = self._state()
        refs = layout.list_segments(self.store, state.epoch, start_after=self._listed_after)
        applied = 0
        while True:
            state = self._state()
            after_snapshot = state.previous == "" and state.applied_lsn == state.snapshot_lsn
            try:
                ref = next_segment(refs, state.applied_lsn, after_snapshot, limit)
            except Gap:
                if self.rebuild_on_gap:
                    self._rebuild_past_gap(state, db)
                raise
            if ref is None:
                break
            self._apply(db, ref, state)
            applied += 1
        return applied

    def _apply(self, db: Database, ref: layout.SegmentRef, state: StandbyState) -> None:
        segment = read_segment(self.store, ref)
        after_snapshot = state.previous == "" and state.applied_lsn == state.snapshot_lsn
        check_link(
            segment,
            _where(self.store, ref.key),
            state.uuid,
            state.epoch,
            "" if after_snapshot else state.previous,
        )
        IO.crash_point("follow.before_apply")
        rows = db.apply_shipped(segment.records)
        IO.crash_point("follow.after_apply")
        state.applied_lsn = segment.header.last_lsn
        state.previous = segment.digest.hex()
        state.applied_commit_ns = segment.header.last_commit_ns or state.applied_commit_ns
        save_standby(self.db_dir, state)
        self._listed_after = ref.key
        self.report.segments += 1
        self.report.rows += rows

    def _epoch_limit(self, claims: list[layout.EpochClaim], db: Database) -> int | None:
        """Move the standby on to the next epoch while it stands at that epoch's branch;
        then the last LSN of its epoch that is history (None: the epoch is still open)."""
        while True:
            state = self._state()
            following = next((c for c in claims if c.epoch > state.epoch), None)
            if following is None:
                return None
            last = following.branch_lsn
            if state.applied_lsn > last:
                raise Corruption(
                    f"standby {self.name} applied LSNs up to {state.applied_lsn} of epoch "
                    f"{state.epoch}, past where epoch {following.epoch} branched off ({last}): "
                    "it holds writes of a fenced primary",
                    hint="follow the store into a new database",
                )
            if state.applied_lsn < last or not self.switch_epochs:
                return last
            if following.previous and state.previous and following.previous != state.previous:
                raise Corruption(
                    f"epoch claim {following.epoch} in {self.store.describe()} branches from "
                    f"another history than standby {self.name} holds",
                )
            state.epoch = following.epoch
            save_standby(self.db_dir, state)
            db.follow_epoch(following.epoch)
            self._listed_after = ""

    def _rebuild_past_gap(self, state: StandbyState, db: Database) -> None:
        """A gap a newer snapshot covers: the standby is rebuilt from that snapshot (and
        :class:`Reopen` raised). Without one, nothing happens."""
        snaps = [s for s in snapshots_of(self.store, state.uuid) if s.lsn > state.applied_lsn]
        if not snaps:
            return
        db.close()
        gap_from = state.applied_lsn + 1
        self.seed(snaps[-1])
        self.report.notes.append(
            f"rebuilt from snapshot {snaps[-1].name}: the log missed LSNs from {gap_from} "
            f"(the primary was reseeded)"
        )
        raise Reopen()

    def _state(self) -> StandbyState:
        state = load_standby(self.db_dir)
        if state is None:
            raise InvalidArgument(f"database {self.name} is not a standby")
        return state

    def finish_report(self, db: Database | None) -> FollowReport:
        state = self._state()
        self.report.epoch = state.epoch
        self.report.applied_lsn = state.applied_lsn
        self.report.applied_commit_ns = state.applied_commit_ns
        try:
            refs = layout.list_segments(self.store, state.epoch, start_after=self._listed_after)
            newest = max((r.last_lsn for r in refs), default=state.applied_lsn)
            self.report.behind_records = max(0, newest - state.applied_lsn)
        except EngineError:
            pass
        return self.report


class Reopen(Exception):
    """The standby was rebuilt: open it again."""


def layout_missing_snapshot(store: Store) -> EngineError:
    return NotFound(
        f"{store.describe()} holds no snapshot to build a standby from yet",
        hint="the primary's shipper uploads one on its first run (tsadmin replicate DB --once)",
    )


def follow(
    data_dir: Path,
    url: str,
    name: str,
    *,
    once: bool,
    interval: float = 1.0,
    should_stop: Callable[[], bool] = lambda: False,
    on_error: Callable[[EngineError], None] | None = None,
) -> FollowReport:
    """Seed the standby if needed, then apply segments: until caught up (``once``), or
    every ``interval`` seconds until ``should_stop``. A store that cannot be reached
    is retried (``on_error`` hears of it); damage and gaps stop following."""
    from engine.errors import StoreUnavailable

    follower = Follower(data_dir, url, name)
    follower.seed_if_missing()
    while True:
        db = follower.open()
        try:
            while True:
                try:
                    follower.catch_up(db)
                except StoreUnavailable as exc:
                    if once:
                        raise
                    if on_error is not None:
                        on_error(exc)
                if once or should_stop():
                    break
                _sleep(interval, should_stop)
                if should_stop():
                    break
            report = follower.finish_report(db)
            db.close()
            return report
        except Reopen:
            continue
        except BaseException:
            db.abandon()
            raise


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not should_stop():
        time.sleep(min(0.05, seconds))


# -- promotion ------------------------------------------------------------------------------


@dataclass
class PromoteReport:
    database: str
    store: str
    epoch: int
    branch_lsn: int
    applied_commit_ns: int
    segments_applied: int
    claimed_at: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PromotionLost(AlreadyExists):
    """Another standby claimed the epoch first."""


def promote(data_dir: Path, name: str, *, wait_seconds: float = 30.0) -> PromoteReport:
    """See the module docstring."""
    db_dir = database_dir(require_data_dir(data_dir), name)
    state = load_standby(db_dir)
    if state is None:
        raise InvalidArgument(f"database {name} is not a standby: there is nothing to promote")
    _stop_follower(db_dir, name, wait_seconds)
    follower = Follower(data_dir, state.source, name)
    follower.rebuild_on_gap = False
    follower.switch_epochs = False
    db = follower.open()
    try:
        applied = 0
        claim = _own_claim(follower.store, state)
        if claim is None:
            applied = follower.catch_up(db, stop_at_gap=True)
            state = follower._state()
            state.promoting = state.promoting or os.urandom(16).hex()
            save_standby(db_dir, state)
            proposal = layout.new_claim(
                state.uuid, state.epoch + 1, state.applied_lsn, bytes.fromhex(state.previous)
            )
            proposal = layout.EpochClaim(**{**asdict(proposal), "token": state.promoting})
            claim = layout.claim_epoch(follower.store, proposal)
            if claim.token != state.promoting:
                state.promoting = None
                save_standby(db_dir, state)
                raise PromotionLost(
                    f"epoch {claim.epoch} of {follower.store.describe()} was claimed first, at "
                    f"{claim.claimed_at} on {claim.host}: standby {name} was not promoted",
                    hint="another standby is the primary now; follow it (this one keeps "
                    "following the store and will move to the new epoch)",
                )
        IO.crash_point("promote.after_claim")
        new_primary_position(db_dir, state.source, claim.epoch, claim.branch_lsn, claim.previous)
        db.become_primary(claim.epoch, (state.source,))
        IO.remove(db_dir / STANDBY)  # the commit point of the promotion on this side
        IO.crash_point("promote.after_commit")
        db.close()
    except BaseException:
        if not db._closed:
            db.abandon()
        raise
    return PromoteReport(
        database=name,
        store=state.source,
        epoch=claim.epoch,
        branch_lsn=claim.branch_lsn,
        applied_commit_ns=state.applied_commit_ns,
        segments_applied=applied,
        claimed_at=claim.claimed_at,
    )


def _own_claim(store: Store, state: StandbyState) -> layout.EpochClaim | None:
    """Our claim of a promotion that was interrupted after it won, if any."""
    if not state.promoting:
        return None
    for claim in layout.read_claims(store):
        if claim.token == state.promoting:
            return claim
    return None


def _stop_follower(db_dir: Path, name: str, wait_seconds: float) -> None:
    """Ask a running ``follow`` of the standby to stop (SIGTERM) and wait for it."""
    pid = holder_pid(db_dir)
    if pid is None:
        return
    if pid > 0:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + wait_seconds
    while holder_pid(db_dir) is not None:
        if time.monotonic() >= deadline:
            raise Locked(
                f"standby {name} is held by PID {pid}, which did not stop in {wait_seconds:g}s",
                hint="stop the follower, then promote again",
                pid=pid,
            )
        time.sleep(0.05)


def new_primary_position(
    db_dir: Path, url: str, epoch: int, branch_lsn: int, previous: str
) -> None:
    """The promoted database's shipper starts at the branch: the WAL after it is held."""
    save_ship_state(db_dir, ShipState(url, epoch, shipped_lsn=branch_lsn, previous=previous))
