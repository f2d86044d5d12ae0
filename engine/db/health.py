"""What an operator alerts on, per database: replication lag, WAL size, checkpoint and
backup age. Read by ``db stats``, the write endpoint's ``/metrics`` and the textfile
written for node_exporter (``healthmetrics.py`` renders them), so the three always agree.

``backups.json`` in a database's directory (this module's one file) remembers the last
successful backup per store, written by a backup when it has been published::

    {"<store as given>": {"archive": "<URL of the archive>", "kind": "database" | "table",
                          "incremental": false, "at": <unix seconds>}}

It is a record for alerting, not a catalogue (the store is): written atomically; a
lost or damaged file only forgets when backups last ran.

``rejected.json`` beside it counts the rows ``ingest`` runs rejected, by kind of
reason, since the file was made (the write endpoint counts its own in its metrics)::

    {"beyond retention": 300, "bad line": 2}
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.db.replicastate import load_ship_state
from engine.errors import EngineError
from engine.io.fileio import IO
from engine.io.lock import held_exclusively
from engine.log import wal
from engine.log.reader import scan_file
from engine.log.txn import commit_of
from engine.storage import manifest as manifest_format
from engine.timeparse import iso_utc

BACKUPS = "backups.json"
REJECTED = "rejected.json"
TEXTFILE = "tsadmin.prom"


@dataclass
class ReplicaHealth:
    url: str
    shipped_lsn: int
    behind_records: int  # LSNs committed here and not yet confirmed by the store
    # age of the oldest commit the store has not confirmed; 0 when it holds everything
    lag_seconds: float
    shipped_commit_at: float | None  # unix seconds of the newest confirmed commit
    error: str | None = None  # known only inside the process that ships


@dataclass
class BackupRecord:
    store: str
    archive: str
    kind: str
    incremental: bool
    at: float  # unix seconds


@dataclass
class DatabaseHealth:
    database: str
    last_lsn: int
    checkpoint_lsn: int
    wal_bytes: int
    last_checkpoint_at: float  # unix seconds: when the manifest was last written
    replicas: list[ReplicaHealth] = field(default_factory=list)
    backups: list[BackupRecord] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)  # by ingest runs, per reason

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        """Moments as ISO 8601 text (Prometheus gets unix seconds), ages in seconds."""
        now = time.time() if now is None else now
        body = asdict(self)
        body["last_checkpoint_at"] = iso_utc(self.last_checkpoint_at)
        body["checkpoint_age_seconds"] = round(max(0.0, now - self.last_checkpoint_at), 3)
        for item in body["replicas"]:
            item["shipped_commit_at"] = iso_utc(item["shipped_commit_at"])
        for item in body["backups"]:
            item["age_seconds"] = round(max(0.0, now - item["at"]), 3)
            item["at"] = iso_utc(item["at"])
        return body


def database_health(
    db_dir: Path,
    database: str,
    last_lsn: int,
    *,
    errors: dict[str, str] | None = None,
    now: float | None = None,
) -> DatabaseHealth:
    """The figures of the database in ``db_dir`` whose last committed LSN is
    ``last_lsn``; ``errors``: the shipping process's last error per replica store."""
    now = time.time() if now is None else now
    manifest = manifest_format.load(db_dir)
    wal_paths = wal.wal_files(db_dir / wal.WAL_DIR)
    health = DatabaseHealth(
        database=database,
        last_lsn=last_lsn,
        checkpoint_lsn=manifest.checkpoint_lsn,
        wal_bytes=sum(_size(p) for p in wal_paths),
        last_checkpoint_at=_mtime(db_dir / manifest_format.FILENAME),
        backups=load_backups(db_dir),
        rejected=load_rejected(db_dir),
    )
    for url in manifest.settings.replicas:
        state = load_ship_state(db_dir, url)
        shipped = state.shipped_lsn if state else 0
        behind = max(0, last_lsn - shipped)
        oldest = _first_commit_after(wal_paths, shipped) if behind else None
        health.replicas.append(
            ReplicaHealth(
                url=url,
                shipped_lsn=shipped,
                behind_records=behind,
                lag_seconds=round(max(0.0, now - oldest), 3) if oldest else 0.0,
                shipped_commit_at=state.shipped_commit_ns / 1e9
                if state and state.shipped_commit_ns
                else None,
                error=(errors or {}).get(url),
            )
        )
    return health


def _first_commit_after(paths: list[Path], lsn: int) -> float | None:
    """Unix seconds of the first commit past ``lsn`` in the WAL (None: none is there,
    or it carries no time). The WAL is bounded by checkpoints and the hold limits."""
    for path in paths:
        try:
            scan = scan_file(path)
        except (FileNotFoundError, EngineError):
            continue  # rotated away meanwhile; a damaged file is verify's to report
        for record in scan.records:
            commit = commit_of(record) if record.lsn > lsn else None
            if commit is not None:
                return commit.time_ns / 1e9 if commit.time_ns else None
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


# -- backups.json ------------------------------------------------------------------


def load_backups(db_dir: Path) -> list[BackupRecord]:
    try:
        raw = json.loads((db_dir / BACKUPS).read_bytes())
    except (FileNotFoundError, ValueError):
        return []
    if not isinstance(raw, dict):
        return []
    out = []
    for store, item in sorted(raw.items()):
        try:
            out.append(
                BackupRecord(
                    store=store,
                    archive=str(item["archive"]),
                    kind=str(item["kind"]),
                    incremental=bool(item.get("incremental", False)),
                    at=float(item["at"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue  # a damaged entry only forgets that store's last backup
    return out


def record_backup(
    db_dir: Path, store: str, archive: str, kind: str, incremental: bool, at: float
) -> None:
    """Remember the last successful backup to ``store`` (as the operator named it).
    Backups of one database may finish at once: the database directory's lock makes
    their updates one after the other (none lost, no temporary file shared)."""
    with held_exclusively(db_dir):
        entries = {b.store: b for b in load_backups(db_dir)}
        entries[store] = BackupRecord(store, archive, kind, incremental, at)
        body = {
            s: {"archive": b.archive, "kind": b.kind, "incremental": b.incremental, "at": b.at}
            for s, b in sorted(entries.items())
        }
        data = json.dumps(body, indent=1).encode()
        IO.write_file_atomic(db_dir / BACKUPS, data, "backups.record")


# -- rejected.json -----------------------------------------------------------------


def load_rejected(db_dir: Path) -> dict[str, int]:
    try:
        raw = json.loads((db_dir / REJECTED).read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in sorted(raw.items()) if isinstance(v, int) and v >= 0}


def record_rejected(db_dir: Path, counts: dict[str, int]) -> None:
    """Add an ingest run's rejected rows per reason to the database's totals."""
    totals = load_rejected(db_dir)
    for reason, n in counts.items():
        totals[reason] = totals.get(reason, 0) + n
    IO.write_file_atomic(
        db_dir / REJECTED, json.dumps(totals, indent=1, sort_keys=True).encode(), "rejected"
    )
