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

A damaged segment or an object that does not link is never skipped:
following stops and names it. Every way the primary's history can move on
without the standby is known, and each either rebuilds the standby from the
newest usable snapshot (the report says so) or stops it with
:class:`NeedsRebuild` (recorded in ``standby.json``, so ``replica status``
says ``needs rebuild``), never leaving it silently stale:

* a reseed marker past its position (the primary lost the WAL it needed);
* a gap: a segment missing while later ones exist;
* a newer epoch whose branch lies before its position (it applied writes of
  a fenced primary);
* a snapshot newer than its position that no segment continues, for longer
  than ``TSADMIN_STALE_GRACE`` seconds (a reseed whose marker was never written, or a store
  written by a build without markers).

While a promotion has begun and not finished (a fence without its claim) a
follower applies nothing: the branch point is not known yet.

Promotion is :mod:`engine.replication.promote`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.archive import format as archive
from engine.archive import store as archivestore
from engine.archive.backup import chain, effective_files
from engine.archive.restore import build_database
from engine.db.database import Database
from engine.db.datadir import database_dir, ensure_data_dir
from engine.db.replicastate import (
    STANDBY,
    StandbyState,
    encode_standby,
    load_standby,
    save_standby,
)
from engine.errors import (
    AlreadyExists,
    Corruption,
    EngineError,
    InvalidArgument,
    NotFound,
)
from engine.io.fileio import IO
from engine.replication import layout, logsegment
from engine.replication.snapshots import Snapshot, usable_snapshots
from engine.settings import tunable
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


# A snapshot newer than the standby that no segment continues for this long means the
# log will not continue it (a live primary ships within seconds of a snapshot).
def stale_grace() -> float:
    return tunable("TSADMIN_STALE_GRACE", 30.0)


APPLY_BYTES = 16 << 20  # segments applied together by a standby catching up


class Gap(Corruption):
    """Segments are missing from the store between the standby's position and the next
    segment present."""


class NeedsRebuild(Corruption):
    """The store's log can never continue the standby, and no snapshot past its position
    is usable: it must be built again (follow into a new database) once one is."""


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
    """The segment that continues a chain at ``applied``: the longest compacted one
    starting at or before ``applied + 1`` (a reader inside its range continues at one
    of its boundaries), else the shortest ordinary one starting right after it (a
    longer overlapping one is a re-upload), else, right after a snapshot, the
    shortest that covers ``applied + 1``. Ones at or below ``applied`` are
    duplicates, ones past ``limit`` (a fenced primary's) not history; both are
    ignored. Raises :class:`Gap` when only later segments exist."""
    live = [r for r in refs if r.last_lsn > applied and (limit is None or r.first_lsn <= limit)]
    merged = [r for r in live if r.compacted and r.first_lsn <= applied + 1]
    if merged:
        return max(merged, key=lambda r: r.last_lsn)
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
    segment: logsegment.Segment,
    where: str,
    uuid: str,
    epoch: int,
    previous: str,
    applied: int,
) -> None:
    """Whether ``segment`` may continue a reader at ``applied`` whose last link is
    ``previous`` ("": right after a snapshot, not checked)."""
    head = segment.header
    problem = None
    if head.uuid != uuid:
        problem = f"it is of database {head.uuid}, not {uuid}"
    elif head.epoch != epoch:
        problem = f"it is of epoch {head.epoch}, not {epoch}"
    elif previous and not segment.continues(applied, bytes.fromhex(previous)):
        problem = "its link to the segment before does not match (another history)"
    if problem:
        raise Corruption(f"log segment {where}: {problem}", path=where)


def _exact_successor(
    starting: dict[int, list[layout.SegmentRef]], applied: int, limit: int | None
) -> layout.SegmentRef | None:
    """The segment starting right after ``applied`` (``next_segment``'s choice among
    those, found by index: a run of thousands of segments stays linear)."""
    found = [r for r in starting.get(applied + 1, []) if limit is None or r.first_lsn <= limit]
    merged = [r for r in found if r.compacted]
    if merged:
        return max(merged, key=lambda r: r.last_lsn)
    return min(found, key=lambda r: r.last_lsn) if found else None


class Follower:
    """Keeps standby ``name`` of ``data_dir`` up with the store at ``url``."""

    def __init__(self, data_dir: Path, url: str, name: str) -> None:
        self.data_dir = ensure_data_dir(data_dir)  # a second site starts from nothing
        self.url = url
        self.name = name
        self.store = open_store(url)
        self.db_dir = database_dir(self.data_dir, name)
        self.report = FollowReport(name, url)
        self._listed_after = ""
        self._progressed = False
        self.rebuild = True  # rebuild from a newer snapshot when the log cannot continue
        # promote stays in the epoch it found: a newer one means another standby won
        self.switch_epochs = True
        self.own_fence: str | None = None  # promote's token: its own fence does not pause it
        self.paused_by: layout.Fence | None = None
        self._idle_since = time.monotonic()
        self._stale_checked = 0.0

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
        snaps = usable_snapshots(self.store, claims)
        if not snaps:
            raise layout_missing_snapshot(self.store)
        self.seed(snaps[-1])

    def seed(self, snap: Snapshot, promoting: str | None = None) -> None:
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
                promoting=promoting,
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

    def catch_up(
        self, db: Database, *, stop_at_gap: bool = False, until_lsn: int | None = None
    ) -> int:
        """Apply every segment the store holds that continues the standby (or only until
        ``until_lsn`` is reached: a live primary may add segments faster than they are
        applied); segments applied."""
        applied = 0
        while until_lsn is None or self.state().applied_lsn < until_lsn:
            try:
                count = self.step(db)
            except (Gap, NeedsRebuild):
                if stop_at_gap:
                    return applied
                raise
            if count == 0:
                return applied
            applied += count
        return applied

    def step(self, db: Database) -> int:
        """One listing of the store and the segments it offers; how many were applied.
        Raises :class:`Reopen` after a rebuild, :class:`NeedsRebuild` when the log
        cannot continue the standby and no snapshot can take over."""
        state = self.state()
        epochs = layout.read_epochs(self.store)
        claims = epochs.claims
        layout.require_replica(self.store, claims)
        if claims[0].uuid != state.uuid:
            raise Corruption(
                f"{self.store.describe()} replicates database {claims[0].uuid}, "
                f"standby {self.name} is of {state.uuid}"
            )
        pending = epochs.pending()
        if pending is not None and pending.epoch > state.epoch and pending.token != self.own_fence:
            self.paused_by = pending  # the branch of the new epoch is not known yet
            return 0
        self.paused_by = None
        limit = self._epoch_limit(claims, db)
        state = self.state()
        # the part listed since the last segment applied while busy; the whole log when
        # idle (a compaction may have merged what comes next under an earlier key)
        start = self._listed_after if self._progressed else ""
        listing = layout.list_log(self.store, state.epoch, start_after=start)
        applied = 0
        while True:
            state = self.state()
            after_snapshot = state.previous == "" and state.applied_lsn == state.snapshot_lsn
            try:
                ref = next_segment(listing.segments, state.applied_lsn, after_snapshot, limit)
            except Gap as gap:
                if start:  # listed in part: what continues may sit under an earlier key
                    start = ""
                    listing = layout.list_log(self.store, state.epoch)
                    continue
                self.cannot_continue(db, state, claims, gap.message)
                raise
            if ref is None:
                break
            run = self._run_from(ref, listing.segments, state, limit)
            if not run:
                break  # merged into a compacted segment meanwhile: the next listing has it
            self._apply(db, run, state)
            applied += len(run)
        self._progressed = applied > 0
        self._check_reseeds(db, listing, claims, limit)
        if applied:
            self._idle_since = time.monotonic()
        state = self.state()
        if state.stopped is not None:  # what stopped it before is behind it now
            state.stopped = None
            save_standby(self.db_dir, state)
        return applied

    def _check_reseeds(
        self,
        db: Database,
        listing: layout.LogListing,
        claims: list[layout.EpochClaim],
        limit: int | None,
    ) -> None:
        """A reseed marker past the position: the log will never continue it."""
        state = self.state()
        for lsn, key in listing.reseeds:
            if lsn > state.applied_lsn and (limit is None or lsn <= limit):
                marker = layout.read_reseed(self.store, key)
                self.cannot_continue(
                    db,
                    state,
                    claims,
                    f"the primary was reseeded from snapshot {marker.snapshot} at LSN "
                    f"{marker.lsn} ({marker.reason}); the log after LSN {marker.lost_after} "
                    "before it will never be shipped",
                )

    def check_stale(self, db: Database) -> None:
        """While idle: a snapshot newer than the standby that no segment continues (for
        longer than ``TSADMIN_STALE_GRACE`` seconds) means the log will not continue it."""
        now = time.monotonic()
        grace = stale_grace()
        if now - self._idle_since < grace or now - self._stale_checked < grace:
            return
        self._stale_checked = now
        state = self.state()
        claims = layout.read_claims(self.store)
        newer = [s for s in usable_snapshots(self.store, claims) if s.lsn > state.applied_lsn]
        if newer and time.time() - _created_seconds(newer[-1].created) > grace:
            self.cannot_continue(
                db,
                state,
                claims,
                f"snapshot {newer[-1].name} (LSN {newer[-1].lsn}) is newer than the standby "
                f"and no log segment continues LSN {state.applied_lsn}",
            )

    def cannot_continue(
        self, db: Database, state: StandbyState, claims: list[layout.EpochClaim], why: str
    ) -> None:
        """Rebuild from the newest usable snapshot past the position (raises
        :class:`Reopen`), or stop with :class:`NeedsRebuild`."""
        newer = [s for s in usable_snapshots(self.store, claims) if s.lsn > state.applied_lsn]
        if self.rebuild and newer:
            db.close()
            self.seed(newer[-1], promoting=state.promoting)
            self.report.notes.append(
                f"rebuilt from snapshot {newer[-1].name} (LSN {newer[-1].lsn}): {why}"
            )
            self._idle_since = time.monotonic()
            raise Reopen()
        raise NeedsRebuild(
            f"standby {self.name} at LSN {state.applied_lsn} cannot be continued: {why}; "
            "the store holds no usable snapshot past it",
            hint="wait for the primary's next snapshot, then follow again (it rebuilds), or "
            "follow into a new database",
        )

    def _run_from(
        self,
        first: layout.SegmentRef,
        refs: list[layout.SegmentRef],
        state: StandbyState,
        limit: int | None,
    ) -> list[tuple[layout.SegmentRef, logsegment.Segment]]:
        """``first`` and the segments that continue it in ``refs``, downloaded and each
        checked against the one before (its digest, records, header and link), up to
        ``APPLY_BYTES``: applied together, one fsync and one position for all of them.
        Stops early at a segment gone meanwhile (compacted) or a gap (the next step says
        so)."""
        run: list[tuple[layout.SegmentRef, logsegment.Segment]] = []
        starting: dict[int, list[layout.SegmentRef]] = {}
        for candidate in refs:
            starting.setdefault(candidate.first_lsn, []).append(candidate)
        applied, previous, size = state.applied_lsn, state.previous, 0
        after_snapshot = previous == "" and applied == state.snapshot_lsn
        ref: layout.SegmentRef | None = first
        while ref is not None and size < APPLY_BYTES:
            try:
                segment = read_segment(self.store, ref)
            except NotFound:
                break
            where = _where(self.store, ref.key)
            link = "" if after_snapshot else previous
            check_link(segment, where, state.uuid, state.epoch, link, applied)
            run.append((ref, segment))
            applied, previous = segment.header.last_lsn, segment.link.hex()
            after_snapshot, size = False, size + ref.size
            ref = _exact_successor(starting, applied, limit)
        return run

    def _apply(
        self,
        db: Database,
        run: list[tuple[layout.SegmentRef, logsegment.Segment]],
        state: StandbyState,
    ) -> None:
        IO.crash_point("follow.before_apply")
        rows = db.apply_shipped([r for _, segment in run for r in segment.records])
        IO.crash_point("follow.after_apply")
        ref, last = run[-1]
        state.applied_lsn = last.header.last_lsn
        state.previous = last.link.hex()
        commits = [s.header.last_commit_ns for _, s in run if s.header.last_commit_ns]
        state.applied_commit_ns = commits[-1] if commits else state.applied_commit_ns
        state.stopped = None
        save_standby(self.db_dir, state)
        self._listed_after = ref.key
        self.report.segments += len(run)
        self.report.rows += rows

    def _epoch_limit(self, claims: list[layout.EpochClaim], db: Database) -> int | None:
        """Move the standby on to the next epoch while it stands at that epoch's branch;
        then the last LSN of its epoch that is history (None: the epoch is still open)."""
        while True:
            state = self.state()
            following = next((c for c in claims if c.epoch > state.epoch), None)
            if following is None:
                return None
            last = following.branch_lsn
            if state.applied_lsn > last:
                self.cannot_continue(
                    db,
                    state,
                    claims,
                    f"it applied LSNs up to {state.applied_lsn} of epoch {state.epoch}, past "
                    f"where epoch {following.epoch} branched off ({last}): writes of a fenced "
                    "primary",
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

    def record_stop(self, error: EngineError) -> None:
        """Say in ``standby.json`` why following stopped (``replica status`` shows it)."""
        state = load_standby(self.db_dir)
        if state is None:
            return
        state.stopped = {
            "at": time.time(),
            "error": error.message,
            "needs_rebuild": isinstance(error, NeedsRebuild | Gap),
        }
        save_standby(self.db_dir, state)

    def state(self) -> StandbyState:
        state = load_standby(self.db_dir)
        if state is None:
            raise InvalidArgument(f"database {self.name} is not a standby")
        return state

    def finish_report(self, db: Database | None) -> FollowReport:
        state = self.state()
        self.report.epoch = state.epoch
        self.report.applied_lsn = state.applied_lsn
        self.report.applied_commit_ns = state.applied_commit_ns
        if self.paused_by is not None:
            self.report.notes.append(paused_note(self.paused_by))
        try:
            refs = layout.list_segments(self.store, state.epoch, start_after=self._listed_after)
            newest = max((r.last_lsn for r in refs), default=state.applied_lsn)
            self.report.behind_records = max(0, newest - state.applied_lsn)
        except EngineError:
            pass
        return self.report


def paused_note(fence: layout.Fence) -> str:
    return (
        f"paused: a promotion to epoch {fence.epoch} began at {fence.claimed_at} on "
        f"{fence.host} and has not finished (its branch point is not known yet)"
    )


def _created_seconds(created: str) -> float:
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


class Reopen(Exception):
    """The standby was rebuilt: open it again."""


def layout_missing_snapshot(store: Store) -> EngineError:
    return NotFound(
        f"{store.describe()} holds no snapshot to build a standby from yet",
        hint="the primary's shipper uploads one on its first run",
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
    on_note: Callable[[str], None] | None = None,
) -> FollowReport:
    """Seed the standby if needed, then apply segments: until caught up (``once``), or
    polling until ``should_stop`` (every ``POLL_MIN`` seconds after a segment arrived,
    backing off to ``interval`` while the log is quiet). A store that cannot be reached
    is retried (``on_error`` hears of it); damage and a log that cannot continue the
    standby stop following (recorded for ``replica status``); rebuilds go to
    ``on_note`` as they happen, and to the report."""
    from engine.errors import StoreUnavailable

    follower = Follower(data_dir, url, name)
    follower.seed_if_missing()
    told = 0
    while True:
        db = follower.open()
        try:
            pause = POLL_MIN
            while True:
                try:
                    applied = follower.catch_up(db)
                    if not once and not applied:
                        follower.check_stale(db)
                except StoreUnavailable as exc:
                    if once:
                        raise
                    applied = 0
                    if on_error is not None:
                        on_error(exc)
                if on_note is not None:
                    for item in follower.report.notes[told:]:
                        on_note(item)
                    told = len(follower.report.notes)
                if once or should_stop():
                    break
                pause = POLL_MIN if applied else min(interval, pause * 2)
                _sleep(pause, should_stop)
                if should_stop():
                    break
            report = follower.finish_report(db)
            db.close(checkpoint=once)  # a stopped service hands over at once (promote)
            return report
        except Reopen:
            continue
        except EngineError as exc:
            if not isinstance(exc, StoreUnavailable):
                follower.record_stop(exc)
            db.abandon()
            raise
        except BaseException:
            db.abandon()
            raise


# A follower polls this often right after a segment arrived, backing off to its interval.
POLL_MIN = 0.05


def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not should_stop():
        time.sleep(min(0.05, seconds))
