"""What a replica store holds, and the epoch claims that order its histories.

A replica store is one directory or bucket prefix per database (the URL given
to ``replica add``)::

    epochs/<epoch, 10 digits>.fence      a promotion to that epoch has begun (below)
    epochs/<epoch, 10 digits>.json       one claim per history (below)
    log/<epoch>/<first>-<last>.tslog     shipped log segments (engine/replication/logsegment.py)
    log/<epoch>/<lsn, 20 digits>.reseed  the log before <lsn> will never be shipped:
                                         continue from the snapshot it names (below)
    snapshots/<archive>/...              ordinary archives (engine/archive/format.py) whose
                                         manifest's snapshot_lsn is where the log
                                         takes over

An epoch claim is UTF-8 JSON, created with a conditional write (create only if
absent), so of two contenders for one epoch exactly one succeeds::

    {
      "format": "tsadmin-epoch",
      "version": 1,
      "uuid": "6f1c…",          # the database this store replicates
      "epoch": 2,
      "branch_lsn": 1234,       # the last LSN taken from the epoch before (0 for 1)
      "previous": "ab12…",      # hex SHA-256 trailer of the segment ending at
                                # branch_lsn ("" when the branch is a snapshot's LSN)
      "claimed_at": "2026-11-24T10:00:00Z",
      "host": "site-b",
      "token": "9f0e…"          # random, so a retried promotion knows its own claim
    }

The history of the database is the chain of claims: epoch 1 from LSN 1,
epoch N+1 from its ``branch_lsn`` + 1. Segments of epoch N past the
``branch_lsn`` of epoch N+1 were uploaded by a fenced primary and are not part
of the history: readers ignore them.

A promotion is two conditional creates. The *fence* comes first (same fields as a
claim but ``"format": "tsadmin-fence"`` and no branch)::

    {"format": "tsadmin-fence", "version": 1, "uuid": ..., "epoch": 2,
     "claimed_at": ..., "host": ..., "token": ...}

From the moment it exists the old primary acknowledges nothing more at byrl: it
checks for a newer fence or claim *after* each upload and before it confirms, so
every segment it confirmed was in the store before the fence. The promoting
standby then drains the store (everything of epoch N it can list, which includes
every confirmed segment), and only then writes the claim with the ``branch_lsn``
it reached. While a fence has no claim, followers apply nothing (the branch is
not known yet); a promotion interrupted there is finished by running it again on
the same standby (its token is in its ``standby.json``).

A reseed marker is UTF-8 JSON written by a primary that lost the WAL a replica
still needed (held past its limits) right after it uploaded a fresh snapshot::

    {"format": "tsadmin-reseed", "version": 1, "uuid": ..., "epoch": 1,
     "lsn": 5000,              # the snapshot's LSN: the log continues after it
     "lost_after": 1200,       # the store's position when the WAL was lost
     "snapshot": "m-database-...", "at": "2026-11-24T10:00:00Z", "reason": "..."}

A standby positioned before ``lsn`` can never be continued by the log: it
rebuilds from that snapshot (or a newer one). Markers sort among the segments of
their epoch, so a follower sees one in the listing it already makes.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from engine.errors import Corruption, InvalidArgument, NotFound
from engine.replication import logsegment
from engine.stores import Store, is_url

EPOCHS = "epochs/"
LOG = "log/"
SNAPSHOTS = "snapshots"
FORMAT = "tsadmin-epoch"
FENCE_FORMAT = "tsadmin-fence"
RESEED_FORMAT = "tsadmin-reseed"
VERSION = 1
_RESEED_RE = re.compile(r"log/([0-9]{10})/([0-9]{20})\.reseed")


@dataclass(frozen=True)
class EpochClaim:
    uuid: str
    epoch: int
    branch_lsn: int
    previous: str
    claimed_at: str
    host: str
    token: str

    def encode(self) -> bytes:
        return json.dumps({"format": FORMAT, "version": VERSION, **asdict(self)}).encode()


def claim_key(epoch: int) -> str:
    return f"{EPOCHS}{epoch:010d}.json"


def new_claim(uuid: str, epoch: int, branch_lsn: int, previous: bytes) -> EpochClaim:
    return EpochClaim(
        uuid=uuid,
        epoch=epoch,
        branch_lsn=branch_lsn,
        previous=previous.hex() if any(previous) else "",
        claimed_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        host=socket.gethostname(),
        token=os.urandom(16).hex(),
    )


def decode_claim(data: bytes, where: str) -> EpochClaim:
    try:
        raw: Any = json.loads(data)
        if raw.get("format") != FORMAT or raw.get("version") != VERSION:
            raise ValueError("not an epoch claim of this version")
        return EpochClaim(
            uuid=str(raw["uuid"]),
            epoch=int(raw["epoch"]),
            branch_lsn=int(raw["branch_lsn"]),
            previous=str(raw["previous"]),
            claimed_at=str(raw["claimed_at"]),
            host=str(raw["host"]),
            token=str(raw["token"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Corruption(f"epoch claim {where}: {exc}", path=where) from None


def read_claims(store: Store) -> list[EpochClaim]:
    """Every claim in the store, by epoch; all of one database (else Corruption)."""
    claims = []
    for info in store.list(EPOCHS):
        if not info.key.endswith(".json"):
            continue
        claims.append(decode_claim(store.read(info.key), f"{store.describe()}/{info.key}"))
    claims.sort(key=lambda c: c.epoch)
    if len({c.uuid for c in claims}) > 1:
        raise Corruption(f"replica store {store.describe()} holds claims of several databases")
    return claims


def claim_epoch(store: Store, claim: EpochClaim) -> EpochClaim:
    """Create ``claim`` unless its epoch is claimed; the claim that holds the epoch."""
    key = claim_key(claim.epoch)
    if store.write_if_absent(key, claim.encode()):
        return claim
    return decode_claim(store.read(key), f"{store.describe()}/{key}")


def require_database(store: Store, claims: list[EpochClaim], uuid: str) -> None:
    if claims and claims[0].uuid != uuid:
        raise InvalidArgument(
            f"replica store {store.describe()} replicates database {claims[0].uuid}, "
            f"not this one ({uuid})",
            hint="give each database a store of its own (another prefix or directory)",
        )


def require_replica(store: Store, claims: list[EpochClaim]) -> None:
    if not claims:
        raise NotFound(
            f"{store.describe()} holds no replicated database (no epoch claim)",
            hint="name the URL a primary ships to (its replica list shows it)",
        )


def fence_key(epoch: int) -> str:
    return f"{EPOCHS}{epoch:010d}.fence"


@dataclass(frozen=True)
class Fence:
    """A promotion to ``epoch`` has begun (see the module docstring)."""

    uuid: str
    epoch: int
    claimed_at: str
    host: str
    token: str

    def encode(self) -> bytes:
        return json.dumps({"format": FENCE_FORMAT, "version": VERSION, **asdict(self)}).encode()


def new_fence(uuid: str, epoch: int, token: str) -> Fence:
    claim = new_claim(uuid, epoch, 0, b"")
    return Fence(uuid, epoch, claim.claimed_at, claim.host, token)


def decode_fence(data: bytes, where: str) -> Fence:
    try:
        raw: Any = json.loads(data)
        if raw.get("format") != FENCE_FORMAT or raw.get("version") != VERSION:
            raise ValueError("not a fence of this version")
        return Fence(
            uuid=str(raw["uuid"]),
            epoch=int(raw["epoch"]),
            claimed_at=str(raw["claimed_at"]),
            host=str(raw["host"]),
            token=str(raw["token"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Corruption(f"fence {where}: {exc}", path=where) from None


def place_fence(store: Store, fence: Fence) -> Fence:
    """Create ``fence`` unless its epoch is fenced already; the fence that holds it."""
    key = fence_key(fence.epoch)
    if store.write_if_absent(key, fence.encode()):
        return fence
    return decode_fence(store.read(key), f"{store.describe()}/{key}")


@dataclass(frozen=True)
class Epochs:
    """What ``epochs/`` holds: the claims (the history) and the fences (promotions)."""

    claims: list[EpochClaim]
    fences: list[Fence]

    def newer_than(self, epoch: int) -> EpochClaim | Fence | None:
        """The first claim or fence of an epoch after ``epoch`` (the writer of ``epoch``
        is fenced by it), or None."""
        newer: list[EpochClaim | Fence] = [c for c in self.claims if c.epoch > epoch]
        newer += [f for f in self.fences if f.epoch > epoch]
        return min(newer, key=lambda item: item.epoch) if newer else None

    def pending(self) -> Fence | None:
        """A promotion begun and not finished: a fence whose epoch has no claim."""
        claimed = {c.epoch for c in self.claims}
        waiting = [f for f in self.fences if f.epoch not in claimed]
        return max(waiting, key=lambda f: f.epoch) if waiting else None


def read_epochs(store: Store, after_epoch: int = 0) -> Epochs:
    """The claims and fences of the store (only epochs after ``after_epoch`` when
    given: a writer's check that nobody promoted past it is one short listing)."""
    claims, fences = [], []
    start = claim_key(after_epoch) if after_epoch else ""
    for info in store.list(EPOCHS, start_after=start):
        where = f"{store.describe()}/{info.key}"
        if info.key.endswith(".json"):
            claims.append(decode_claim(store.read(info.key), where))
        elif info.key.endswith(".fence"):
            fences.append(decode_fence(store.read(info.key), where))
    claims.sort(key=lambda c: c.epoch)
    fences.sort(key=lambda f: f.epoch)
    if len({c.uuid for c in claims} | {f.uuid for f in fences}) > 1:
        raise Corruption(f"replica store {store.describe()} holds claims of several databases")
    return Epochs(claims, fences)


def reseed_key(epoch: int, lsn: int) -> str:
    return f"{LOG}{epoch:010d}/{lsn:020d}.reseed"


def parse_reseed_key(key: str) -> tuple[int, int] | None:
    match = _RESEED_RE.fullmatch(key)
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class ReseedMarker:
    """The log of ``epoch`` before ``lsn`` will never be shipped past ``lost_after``:
    continue from ``snapshot`` (see the module docstring)."""

    uuid: str
    epoch: int
    lsn: int
    lost_after: int
    snapshot: str
    at: str
    reason: str

    def encode(self) -> bytes:
        return json.dumps({"format": RESEED_FORMAT, "version": VERSION, **asdict(self)}).encode()


def decode_reseed(data: bytes, where: str) -> ReseedMarker:
    try:
        raw: Any = json.loads(data)
        if raw.get("format") != RESEED_FORMAT or raw.get("version") != VERSION:
            raise ValueError("not a reseed marker of this version")
        return ReseedMarker(
            uuid=str(raw["uuid"]),
            epoch=int(raw["epoch"]),
            lsn=int(raw["lsn"]),
            lost_after=int(raw["lost_after"]),
            snapshot=str(raw["snapshot"]),
            at=str(raw["at"]),
            reason=str(raw["reason"]),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Corruption(f"reseed marker {where}: {exc}", path=where) from None


def write_reseed(store: Store, marker: ReseedMarker) -> None:
    store.write(reseed_key(marker.epoch, marker.lsn), marker.encode())


def read_reseed(store: Store, key: str) -> ReseedMarker:
    return decode_reseed(store.read(key), f"{store.describe()}/{key}")


@dataclass(frozen=True)
class SegmentRef:
    key: str
    epoch: int
    first_lsn: int
    last_lsn: int
    size: int
    compacted: bool = False
    modified: float = 0.0


@dataclass(frozen=True)
class LogListing:
    """One listing of an epoch's log: its segments (by LSN) and reseed markers' keys
    with their LSNs."""

    segments: list[SegmentRef]
    reseeds: list[tuple[int, str]]
    newest_key: str  # the greatest key listed ("" if none): where the next listing starts


def list_log(store: Store, epoch: int, start_after: str = "") -> LogListing:
    prefix = f"{LOG}{epoch:010d}/"
    refs, reseeds, newest = [], [], ""
    for info in store.list(prefix, start_after=start_after):
        newest = max(newest, info.key)
        parsed = logsegment.parse_key(info.key)
        if parsed is not None:
            compacted = logsegment.is_compacted_key(info.key)
            refs.append(SegmentRef(info.key, *parsed, info.size, compacted, info.modified))
            continue
        marker = parse_reseed_key(info.key)
        if marker is not None:
            reseeds.append((marker[1], info.key))
    refs.sort(key=lambda r: (r.first_lsn, r.last_lsn))
    return LogListing(refs, sorted(reseeds), newest)


def list_segments(store: Store, epoch: int, start_after: str = "") -> list[SegmentRef]:
    return list_log(store, epoch, start_after).segments


def history(claims: list[EpochClaim]) -> list[tuple[EpochClaim, int | None]]:
    """Each epoch of the history with the last LSN it contributes (None: still open)."""
    out: list[tuple[EpochClaim, int | None]] = []
    for index, claim in enumerate(claims):
        following = claims[index + 1] if index + 1 < len(claims) else None
        out.append((claim, following.branch_lsn if following else None))
    return out


def child_url(url: str, name: str) -> str:
    """The location of ``name`` inside the store ``url`` (a path or a URL)."""
    if is_url(url):
        return f"{url.rstrip('/')}/{name}"
    return os.path.join(url, name)
