"""Small local files that remember where replication stands.

In a primary's database directory, one pair per replica store (``<id>``: the
first 16 hex digits of the SHA-256 of the store's URL)::

    replication/<id>.json      written by the shipper after each upload:
        {"url": ..., "epoch": 1, "shipped_lsn": 1234, "previous": "<hex>",
         "shipped_commit_ns": ..., "shipped_at": <unix seconds>,
         "fenced": null | {"epoch": 2, "claimed_at": ..., "host": ...}}
    replication/<id>.dropped   written by a checkpoint that had to delete WAL the
        replica still needed (past the hold limits):
        {"through_lsn": 1300, "at": <unix seconds>, "reason": ...}

``shipped_lsn`` is a lower bound (the store is the authority: a shipper that
restarts reads its position from the store): a checkpoint keeps every WAL
record past the smallest ``shipped_lsn``. The ``.json`` file is a hint, written
without fsync (a crash may lose it: then the WAL is held until the next round);
the ``.dropped`` file is durable. The shipper's position is valid only
while it is at or past ``through_lsn``; below it the replica needs a reseed.

In a standby's database directory, ``standby.json``::

    {"source": <URL>, "uuid": ..., "epoch": 1, "applied_lsn": 1234,
     "previous": "<hex>" | "", "applied_commit_ns": ..., "snapshot": <archive>,
     "snapshot_lsn": 1000, "promoting": null | "<token of our fence and claim>",
     "stopped": null | {"at": <unix seconds>, "error": "...", "needs_rebuild": bool}}

``stopped`` is written by a follower that stopped on an error it cannot get past
(a damaged segment, a gap no snapshot covers) and cleared by its next successful
step, so ``replica status`` tells why a standby is not moving.

``previous`` is the digest of the last segment applied ("" right after the
snapshot, whose first segment's link is not checked). Every file is replaced
atomically through the I/O layer.

They live in the database layer (issue 26): a database's writer reads them to refuse
writes on a standby or a fenced primary and to hold WAL a replica still needs, without
importing the replication layer that writes them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import Corruption, Remedy, WritesRefused
from engine.io.fileio import IO
from engine.log import wal

DIR = "replication"
STANDBY = "standby.json"
SHIP_LOCK = "SHIP.lock"


def replica_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        value = json.loads(data)
        if not isinstance(value, dict):
            raise ValueError("not an object")
        return value
    except ValueError as exc:
        raise Corruption(f"{path}: {exc}", path=str(path)) from None


def _encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value, sort_keys=True).encode()


def _save(path: Path, value: dict[str, Any]) -> None:
    IO.mkdirs(path.parent)
    IO.write_file_atomic(path, _encode(value), "replication.state")


@dataclass
class ShipState:
    url: str
    epoch: int = 0
    shipped_lsn: int = 0
    previous: str = ""
    shipped_commit_ns: int = 0
    shipped_at: float = 0.0
    key: str = ""  # the last segment shipped
    fenced: dict[str, Any] | None = None


def ship_state_path(db_dir: Path, url: str) -> Path:
    return db_dir / DIR / f"{replica_id(url)}.json"


def load_ship_state(db_dir: Path, url: str) -> ShipState | None:
    """The shipper's last position, or None (never shipped, or the file was lost or
    emptied by a crash: it is a hint, see :func:`save_ship_state`)."""
    try:
        raw = _load(ship_state_path(db_dir, url))
    except Corruption:
        return None
    if raw is None:
        return None
    return ShipState(**{k: raw[k] for k in ShipState.__dataclass_fields__ if k in raw})


def save_ship_state(db_dir: Path, state: ShipState) -> None:
    """Written for other processes to see at once, not fsynced (it is written at every
    confirmation, a byrl write's path): after a crash an older or missing position only
    holds more WAL, and the shipper takes its position from the store anyway."""
    path = ship_state_path(db_dir, state.url)
    if not path.parent.exists():
        IO.mkdirs(path.parent)
    IO.write_file_visible(path, _encode(asdict(state)), "replication.state")


def dropped_through(db_dir: Path, url: str) -> int:
    raw = _load(db_dir / DIR / f"{replica_id(url)}.dropped")
    return int(raw["through_lsn"]) if raw else 0


def mark_dropped(db_dir: Path, url: str, through_lsn: int, at: float, reason: str) -> None:
    path = db_dir / DIR / f"{replica_id(url)}.dropped"
    if through_lsn > dropped_through(db_dir, url):
        _save(path, {"through_lsn": through_lsn, "at": at, "reason": reason, "url": url})


def forget(db_dir: Path, url: str) -> None:
    """A removed replica: its position no longer holds any WAL."""
    rid = replica_id(url)
    IO.remove_many(p for p in (db_dir / DIR).glob(f"{rid}.*") if p.is_file())


@dataclass
class StandbyState:
    source: str
    uuid: str
    epoch: int
    applied_lsn: int
    previous: str = ""
    applied_commit_ns: int = 0
    snapshot: str = ""
    snapshot_lsn: int = 0
    promoting: str | None = None
    notes: list[str] = field(default_factory=list)
    stopped: dict[str, Any] | None = None


def load_standby(db_dir: Path) -> StandbyState | None:
    raw = _load(db_dir / STANDBY)
    if raw is None:
        return None
    return StandbyState(**{k: raw[k] for k in StandbyState.__dataclass_fields__ if k in raw})


def save_standby(db_dir: Path, state: StandbyState) -> None:
    IO.write_file_atomic(db_dir / STANDBY, encode_standby(state), "replication.state")


def encode_standby(state: StandbyState) -> bytes:
    return _encode(asdict(state))


def is_standby(db_dir: Path) -> bool:
    return (db_dir / STANDBY).exists()


def fenced_refusal(message: str, database: str) -> WritesRefused:
    """The refusal of a write to a fenced primary: what to do instead."""
    return WritesRefused(
        message,
        hint="write to the new primary; to bring this site back, follow the new primary "
        "into a fresh database and drop this one",
    ).advise(Remedy.FOLLOW_NEW_PRIMARY, database)


def keep_checkpoint_wal(
    db_dir: Path,
    urls: tuple[str, ...],
    path: Path,
    last_lsn: int,
    hold_bytes: int,
    hold_age: float,
    notices: list[str],
) -> bool:
    """Whether ``checkpoint.wal`` (records up to ``last_lsn``) must stay for a replica.
    Past the hold limits it goes anyway and the replicas that needed it are marked for
    a reseed, loudly (``notices``)."""
    behind = [u for u in urls if _shipped(db_dir, u) < last_lsn]
    if not behind:
        return False
    held = sum(p.stat().st_size for p in wal.wal_files(path.parent))
    age = time.time() - path.stat().st_mtime
    if held <= hold_bytes and age <= hold_age:
        return True
    reason = (
        f"{held:,} WAL bytes held, over the {hold_bytes:,}-byte limit"
        if held > hold_bytes
        else f"WAL held {age:.0f}s, over the {hold_age:.0f}s limit"
    )
    for url in behind:
        mark_dropped(db_dir, url, last_lsn, time.time(), reason)
        notices.append(
            f"replica {url} needs a reseed: {reason}; the shipper uploads a fresh snapshot"
        )
    return False


def _shipped(db_dir: Path, url: str) -> int:
    state = load_ship_state(db_dir, url)
    return state.shipped_lsn if state is not None else 0
