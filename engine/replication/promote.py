"""Promotion: a standby becomes the primary of the next epoch.

The order is what makes a ``byrl`` acknowledgement hold through a promotion
(the store layout, :mod:`.layout`, describes the objects):

1. the follower is stopped and the standby catches up with what the store
   holds, rebuilding from a newer snapshot if the log cannot continue it; a
   standby still behind the store is refused here, before anything changed
   (``force`` promotes it anyway and the report says what is given up);
2. the *fence* of epoch N+1 is created (a conditional create: of two standbys
   promoted at once, one wins). From then on the old primary confirms nothing:
   it checks for a fence after every upload, before it acknowledges;
3. the standby drains the store again: every segment the old primary could
   have confirmed was in the store before the fence, so it is applied now;
4. the *claim* of epoch N+1 records the LSN reached as the branch point; only
   then do followers and point-in-time restores know where epoch N ends;
5. the database becomes a primary that ships to the same store.

An interrupted promotion is finished by running it again on the same standby:
its token (in ``standby.json``) identifies its own fence and claim.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.db.database import Database
from engine.db.datadir import database_dir, require_data_dir
from engine.db.replicastate import (
    STANDBY,
    ShipState,
    StandbyState,
    load_standby,
    save_ship_state,
    save_standby,
)
from engine.errors import AlreadyExists, Corruption, InvalidArgument, Locked
from engine.io.fileio import IO
from engine.io.lock import holder_pid
from engine.replication import layout
from engine.replication.snapshots import usable_snapshots
from engine.replication.standby import Follower, NeedsRebuild, Reopen
from engine.stores import Store


@dataclass
class PromoteReport:
    database: str
    store: str
    epoch: int
    branch_lsn: int
    applied_commit_ns: int
    segments_applied: int
    claimed_at: str
    rebuilt_from: str | None = None
    gave_up: dict[str, Any] | None = None  # with force: what the store held past the branch
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class PromotionLost(AlreadyExists):
    """Another standby claimed the epoch first."""


class BehindStore(NeedsRebuild):
    """The standby cannot reach what the store holds; promoting it would lose that."""


@dataclass(frozen=True)
class Behind:
    """What the store holds past the standby's position and why it cannot be applied."""

    from_lsn: int
    to_lsn: int
    why: str


def promote(
    data_dir: Path, name: str, *, wait_seconds: float = 30.0, force: bool = False
) -> PromoteReport:
    """See the module docstring."""
    db_dir = database_dir(require_data_dir(data_dir), name)
    state = load_standby(db_dir)
    if state is None:
        raise InvalidArgument(f"database {name} is not a standby: there is nothing to promote")
    _stop_follower(db_dir, name, wait_seconds)
    state.promoting = state.promoting or os.urandom(16).hex()
    save_standby(db_dir, state)
    follower = Follower(data_dir, state.source, name)
    follower.switch_epochs = False
    follower.own_fence = state.promoting
    promotion = _Promotion(follower, state.promoting, force)
    promotion.stop_holder = lambda: _stop_follower(db_dir, name, wait_seconds)
    return promotion.run()


class _Promotion:
    def __init__(self, follower: Follower, token: str, force: bool) -> None:
        self.follower = follower
        self.store: Store = follower.store
        self.token = token
        self.force = force
        self.applied = 0
        self.gave_up: Behind | None = None
        self.db: Database
        self.stop_holder: Callable[[], None] = lambda: None

    def run(self) -> PromoteReport:
        self.db = self._open()
        try:
            claim = self._own_claim()
            if claim is None:
                self._drain(fenced=False)
                self._fence()
                self._drain(fenced=True)
                claim = self._claim()
            return self._become_primary(claim)
        except BaseException:
            self.db.abandon()
            raise

    def _open(self, attempts: int = 3) -> Database:
        """The standby, opened for writing. A follower (re)started just as the promotion
        looked for one takes the lock a moment later: it is asked to stop as well."""
        for _ in range(attempts - 1):
            try:
                return self.follower.open()
            except Locked:
                self.stop_holder()
        return self.follower.open()

    # -- the steps ----------------------------------------------------------------------
    def _own_claim(self) -> layout.EpochClaim | None:
        """Our claim of a promotion that was interrupted after it was written, if any."""
        for claim in layout.read_claims(self.store):
            if claim.token == self.token:
                return claim
        return None

    def _drain(self, *, fenced: bool) -> None:
        """Apply what the store holds, rebuilding from a newer snapshot when the log
        cannot continue the standby; refuse (unless forced) if it is still behind.

        Before the fence an old primary that still writes keeps adding segments: the
        standby chases only what the store held when it first looked (reaching that
        shows the log continues it), and the fenced drain applies the rest, which the
        fence bounds. Chasing the moving end instead took as long as the old primary
        out-wrote the standby."""
        target: int | None = None
        while True:
            try:
                if not fenced and target is None:
                    ahead = self._behind(None)
                    target = self.follower.state().applied_lsn if ahead is None else ahead.to_lsn
                self.applied += self.follower.catch_up(self.db, until_lsn=target)
                if target is not None and self.follower.state().applied_lsn >= target:
                    return  # what landed since is the fenced drain's
                behind = self._behind(None)
                if behind is not None and self.follower.catch_up(self.db, until_lsn=target):
                    continue  # a segment landed meanwhile
                if behind is not None:
                    self._rebuild_past(behind)
            except Reopen:
                self.db = self.follower.open()
                continue
            except (NeedsRebuild, Corruption) as exc:
                behind = self._behind(exc.message)
            if behind is not None:
                self._refuse_or_give_up(behind, fenced)
            return

    def _rebuild_past(self, behind: Behind) -> None:
        """A usable snapshot past the position: rebuild from it (raises Reopen)."""
        state = self.follower.state()
        claims = layout.read_claims(self.store)
        if any(s.lsn > state.applied_lsn for s in usable_snapshots(self.store, claims)):
            self.follower.cannot_continue(self.db, state, claims, behind.why)

    def _behind(self, problem: str | None) -> Behind | None:
        """What the store holds of the standby's epoch past its position (segments,
        reseed markers and snapshots of the history), if anything."""
        state = self.follower.state()
        claims = layout.read_claims(self.store)
        listing = layout.list_log(self.store, state.epoch)
        limit = next((c.branch_lsn for c in claims if c.epoch > state.epoch), None)
        ends = [r.last_lsn for r in listing.segments]
        ends += [lsn for lsn, _ in listing.reseeds]
        ends += [s.lsn for s in usable_snapshots(self.store, claims) if s.epoch == state.epoch]
        if limit is not None:
            ends = [lsn for lsn in ends if lsn <= limit]
        newest = max(ends, default=state.applied_lsn)
        if newest <= state.applied_lsn and problem is None:
            return None
        unreached = f"the store holds the history up to LSN {newest}"
        why = problem or f"{unreached}, which its log does not bring to the standby"
        return Behind(state.applied_lsn + 1, max(newest, state.applied_lsn), why)

    def _refuse_or_give_up(self, behind: Behind, fenced: bool) -> None:
        if self.force:
            self.gave_up = behind
            return
        name = self.follower.name
        fence_note = (
            " The promotion has begun (the old primary is fenced); promote again with "
            "force to finish it at the standby's position"
            if fenced
            else " Nothing was changed"
        )
        raise BehindStore(
            f"standby {name} is behind what its store holds (LSNs {behind.from_lsn} to "
            f"{behind.to_lsn}): {behind.why}; promoting it would lose them.{fence_note}",
            hint="repair or restore the missing objects, or wait for a newer snapshot; "
            "force the promotion only to give those writes up",
        )

    def _fence(self) -> None:
        state = self.follower.state()
        epochs = layout.read_epochs(self.store)
        taken = next((c for c in epochs.claims if c.epoch > state.epoch), None)
        if taken is not None:
            self._lost(taken.epoch, taken.claimed_at, taken.host)
        fence = layout.place_fence(
            self.store, layout.new_fence(state.uuid, state.epoch + 1, self.token)
        )
        if fence.token != self.token:
            self._lost(fence.epoch, fence.claimed_at, fence.host)
        IO.crash_point("promote.after_fence")

    def _claim(self) -> layout.EpochClaim:
        state = self.follower.state()
        proposal = layout.new_claim(
            state.uuid, state.epoch + 1, state.applied_lsn, bytes.fromhex(state.previous)
        )
        proposal = layout.EpochClaim(**{**asdict(proposal), "token": self.token})
        claim = layout.claim_epoch(self.store, proposal)
        if claim.token != self.token:
            self._lost(claim.epoch, claim.claimed_at, claim.host)
        return claim

    def _lost(self, epoch: int, claimed_at: str, host: str) -> None:
        state = self.follower.state()
        state.promoting = None
        save_standby(self.follower.db_dir, state)
        raise PromotionLost(
            f"epoch {epoch} of {self.store.describe()} was claimed first, at {claimed_at} on "
            f"{host}: standby {self.follower.name} was not promoted",
            hint="another standby is the primary now; follow it (this one keeps following "
            "the store and will move to the new epoch)",
        )

    def _become_primary(self, claim: layout.EpochClaim) -> PromoteReport:
        IO.crash_point("promote.after_claim")
        follower, db = self.follower, self.db
        state = follower.state()
        new_primary_position(
            follower.db_dir, state.source, claim.epoch, claim.branch_lsn, claim.previous
        )
        db.become_primary(claim.epoch, (state.source,))
        IO.remove(follower.db_dir / STANDBY)  # the commit point of the promotion here
        IO.crash_point("promote.after_commit")
        db.close()
        return self._report(claim, state)

    def _report(self, claim: layout.EpochClaim, state: StandbyState) -> PromoteReport:
        report = PromoteReport(
            database=self.follower.name,
            store=state.source,
            epoch=claim.epoch,
            branch_lsn=claim.branch_lsn,
            applied_commit_ns=state.applied_commit_ns,
            segments_applied=self.applied,
            claimed_at=claim.claimed_at,
            rebuilt_from=self.follower.report.seeded_from,
            notes=list(self.follower.report.notes),
        )
        if self.gave_up is not None:
            gave = self.gave_up
            report.gave_up = asdict(gave)
            report.notes.append(
                f"gave up LSNs {gave.from_lsn} to {gave.to_lsn} that the store holds: {gave.why}"
            )
        return report


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
        time.sleep(0.01)


def new_primary_position(
    db_dir: Path, url: str, epoch: int, branch_lsn: int, previous: str
) -> None:
    """The promoted database's shipper starts at the branch: the WAL after it is held."""
    save_ship_state(db_dir, ShipState(url, epoch, shipped_lsn=branch_lsn, previous=previous))
