"""What a replica store holds, and the epoch claims that order its histories.

A replica store is one directory or bucket prefix per database (the URL given
to ``replica add``)::

    epochs/<epoch, 10 digits>.json       one claim per history (below)
    log/<epoch>/<first>-<last>.tslog     shipped log segments (engine/logsegment.py)
    snapshots/<archive>/...              ordinary archives (engine/archive.py) whose
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
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from engine import logsegment
from engine.errors import Corruption, InvalidArgument, NotFound
from engine.stores import Store, is_url

EPOCHS = "epochs/"
LOG = "log/"
SNAPSHOTS = "snapshots"
FORMAT = "tsadmin-epoch"
VERSION = 1


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


@dataclass(frozen=True)
class SegmentRef:
    key: str
    epoch: int
    first_lsn: int
    last_lsn: int
    size: int


def list_segments(store: Store, epoch: int, start_after: str = "") -> list[SegmentRef]:
    prefix = f"{LOG}{epoch:010d}/"
    refs = []
    for info in store.list(prefix, start_after=start_after):
        parsed = logsegment.parse_key(info.key)
        if parsed is not None:
            refs.append(SegmentRef(info.key, *parsed, info.size))
    refs.sort(key=lambda r: (r.first_lsn, r.last_lsn))
    return refs


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
