"""What ``replica status`` reports: per replica store of a primary, or for a standby."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.db.database import Database
from engine.db.datadir import existing_database_dir
from engine.db.replicastate import (
    StandbyState,
    dropped_through,
    load_ship_state,
    load_standby,
)
from engine.errors import EngineError
from engine.log import wal
from engine.log.reader import scan_file
from engine.log.txn import commit_of
from engine.replication import layout, storekeeping
from engine.stores import open_store
from engine.timeparse import iso_utc

# A replica more than this many seconds behind its newest commit is "lagging".
LAGGING_SECONDS = 10.0


def replica_status(data_dir: Path, name: str) -> dict[str, Any]:
    db_dir = existing_database_dir(data_dir, name)
    standby = load_standby(db_dir)
    if standby is not None:
        return _standby_status(name, standby)
    db = Database.open(db_dir, name, readonly=True)
    committed = db.committed_lsn
    unshipped = _unshipped(db_dir)
    held = _held_bytes(db_dir, db.checkpoint_lsn)
    uuid, epoch = db.identity
    replicas = [
        _replica(db_dir, url, uuid, epoch, committed, unshipped, held)
        for url in db.settings.replicas
    ]
    return {
        "database": name,
        "role": "primary",
        "uuid": uuid,
        "epoch": epoch,
        "wal_level": db.settings.wal_level.label,
        "committed_lsn": committed,
        "replicas": replicas,
    }


def _replica(
    db_dir: Path,
    url: str,
    uuid: str,
    epoch: int,
    committed: int,
    unshipped: list[tuple[int, int, int, int | None]],
    held: int,
) -> dict[str, Any]:
    state = load_ship_state(db_dir, url)
    shipped = state.shipped_lsn if state else 0
    behind = [u for u in unshipped if u[0] > shipped]
    oldest = next((t for _, _, _, t in behind if t), None)
    out: dict[str, Any] = {
        "url": url,
        "shipped_lsn": shipped,
        "lag_records": max(0, committed - shipped),
        "lag_rows": sum(rows for _, rows, _, _ in behind),
        "lag_bytes": sum(size for _, _, size, _ in behind),
        "lag_seconds": round(max(0.0, time.time() - oldest / 1e9), 3) if oldest else 0.0,
        "last_shipped_at": iso_utc(state.shipped_at) if state and state.shipped_at else None,
        "held_wal_bytes": held,
        "error": None,
    }
    fenced = state.fenced if state else None
    out.update(store_bytes=None, store_objects=None, snapshots=None, oldest_restorable=None)
    out["newest_snapshot"] = None
    try:
        store = open_store(url)
        store.require_root()
        newer = layout.read_epochs(store).newer_than(epoch)
        if newer is not None and fenced is None:
            fenced = {"epoch": newer.epoch, "claimed_at": newer.claimed_at}
        summary = storekeeping.summarize(store, uuid)
        out.update(
            store_bytes=summary.bytes,
            store_objects=summary.objects,
            snapshots=summary.snapshots,
            oldest_restorable=summary.oldest_restorable,
            newest_snapshot=summary.newest_snapshot,
        )
    except EngineError as exc:
        out["error"] = exc.message
    if fenced:
        out["state"] = "fenced"
        out["fenced_by"] = fenced
    elif shipped < dropped_through(db_dir, url):
        out["state"] = "needs reseed"
    elif out["error"] or out["lag_seconds"] > LAGGING_SECONDS:
        out["state"] = "lagging"
    else:
        out["state"] = "ok"
    return out


def _unshipped(db_dir: Path) -> list[tuple[int, int, int, int | None]]:
    """(LSN, rows, bytes, commit time) of every record the WAL files hold."""
    out = []
    for path in wal.wal_files(db_dir / wal.WAL_DIR):
        try:
            scan = scan_file(path)
        except (FileNotFoundError, EngineError):
            continue
        for record in scan.records:
            commit = commit_of(record)
            rows, when = (0, None) if commit is None else (commit.rows, commit.time_ns)
            out.append((record.lsn, rows, record.size, when))
    return out


def _held_bytes(db_dir: Path, checkpoint_lsn: int) -> int:
    """WAL bytes kept only because a replica still needs them: both files, while a
    ``checkpoint.wal`` whose records are all checkpointed is still there."""
    wal_dir = db_dir / wal.WAL_DIR
    previous = wal_dir / wal.CHECKPOINT
    if not previous.exists():
        return 0
    try:
        current = wal.parse_file_header((wal_dir / wal.CURRENT).read_bytes()[:4096], wal_dir)
    except (FileNotFoundError, EngineError):
        return 0
    if current.start_lsn - 1 > checkpoint_lsn:
        return 0  # a checkpoint in progress, not a hold
    return sum(p.stat().st_size for p in wal.wal_files(wal_dir))


def _standby_status(name: str, standby: StandbyState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "database": name,
        "role": "standby",
        "source": standby.source,
        "uuid": standby.uuid,
        "epoch": standby.epoch,
        "applied_lsn": standby.applied_lsn,
        "applied_commit_ns": standby.applied_commit_ns,
        "applied_commit_at": iso_utc(standby.applied_commit_ns / 1e9)
        if standby.applied_commit_ns
        else None,
        "store_lsn": None,
        "behind_records": None,
        "apply_lag_seconds": None,
        "error": standby.stopped["error"] if standby.stopped else None,
    }
    cannot_continue = bool(standby.stopped and standby.stopped.get("needs_rebuild"))
    promoting = False
    try:
        store = open_store(standby.source)
        epochs = layout.read_epochs(store)
        limit = next((c.branch_lsn for c in epochs.claims if c.epoch > standby.epoch), None)
        listing = layout.list_log(store, standby.epoch)
        applied = standby.applied_lsn
        segments = [r for r in listing.segments if limit is None or r.first_lsn <= limit]
        reseeds = [lsn for lsn, _ in listing.reseeds if lsn > applied]
        reseeds = [lsn for lsn in reseeds if limit is None or lsn <= limit]
        newest = max([r.last_lsn for r in segments] + reseeds, default=applied)
        continued = any(r.first_lsn <= applied + 1 <= r.last_lsn for r in segments)
        cannot_continue = cannot_continue or bool(reseeds) or (newest > applied and not continued)
        pending = epochs.pending()
        promoting = pending is not None and pending.epoch > standby.epoch
        out["store_lsn"] = newest
        out["behind_records"] = max(0, newest - applied)
        since = standby.applied_commit_ns / 1e9 if standby.applied_commit_ns else time.time()
        out["apply_lag_seconds"] = (
            0.0 if newest <= applied else round(max(0.0, time.time() - since), 3)
        )
    except EngineError as exc:
        out["error"] = out["error"] or exc.message
    out["state"] = _standby_state(out, cannot_continue, promoting, standby.stopped is not None)
    return out


def _standby_state(
    out: dict[str, Any], cannot_continue: bool, promoting: bool, stopped: bool
) -> str:
    if cannot_continue:
        return "needs rebuild"  # the follower rebuilds when it can, or says why not
    if stopped:
        return "stopped"
    if promoting:
        return "promoting"
    return "ok" if out["behind_records"] == 0 else "lagging"
