"""What the operations of ``engine.ops`` return: typed records the CLI renders.

Each has ``to_json()``, the one shape every output format starts from (``--format
json`` prints it as is); a field that is None in a record means "not known" and is
rendered so. Part of the api layer, beside ``ops``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.db.health import DatabaseHealth
from engine.storage.checksum import TableDigest
from engine.storage.retention import ExpiryPreview


@dataclass(frozen=True)
class DatabaseSummary:
    """``db show``: identity, settings, tables, LSNs, WAL files and writer."""

    name: str
    path: str
    uuid: str | None  # None: made before identities, never opened for writing since
    epoch: int
    settings: dict[str, Any]
    tables: list[str]
    checkpoint_lsn: int
    last_lsn: int
    writer_pid: int | None
    wal_files: list[dict[str, Any]]
    unclean: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DatabaseListing:
    """One line of ``db list``: the figures, or why the database does not open."""

    name: str
    writer_pid: int | None
    tables: int | None = None
    wal_level: str | None = None
    precision: str | None = None
    last_lsn: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:  # only what is known of a database that does not open
            return {"name": self.name, "writer_pid": self.writer_pid, "error": self.error}
        return {k: v for k, v in asdict(self).items() if k != "error"}


@dataclass(frozen=True)
class TableStats:
    table: str
    segments: int
    partitions: int
    segment_rows: int
    segment_bytes: int
    wal_rows: int  # committed rows still in the memtable (the WAL holds them)

    @property
    def rows(self) -> int:
        return self.segment_rows + self.wal_rows


@dataclass(frozen=True)
class DatabaseStats:
    """``db stats``: storage figures per table and in all, and the health figures."""

    database: str
    tables: list[TableStats]
    wal_bytes: int
    checkpoint_lsn: int
    last_lsn: int
    health: DatabaseHealth

    def table(self, name: str) -> TableStats:
        return next(t for t in self.tables if t.table == name)

    @property
    def segments(self) -> int:
        return sum(t.segments for t in self.tables)

    @property
    def segment_bytes(self) -> int:
        return sum(t.segment_bytes for t in self.tables)

    @property
    def segment_rows(self) -> int:
        return sum(t.segment_rows for t in self.tables)

    @property
    def wal_rows(self) -> int:
        return sum(t.wal_rows for t in self.tables)

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "tables": [asdict(t) for t in self.tables],
            "segments": self.segments,
            "segment_bytes": self.segment_bytes,
            "segment_rows": self.segment_rows,
            "wal_rows": self.wal_rows,
            "wal_bytes": self.wal_bytes,
            "checkpoint_lsn": self.checkpoint_lsn,
            "last_lsn": self.last_lsn,
            "health": self.health.to_json(),
        }


@dataclass(frozen=True)
class Checksum:
    """``db checksum``: an order-independent SHA-256 of the rows, per table and in all."""

    database: str
    last_lsn: int
    sha256: str
    rows: int
    tables: list[TableDigest]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TableSummary:
    """One line of ``table list``."""

    table: str
    tags: int
    fields: int
    segments: int
    rows_stored: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TableDetails:
    """``table show``: columns, rows, series, time range and storage of a table."""

    database: str
    table: str
    columns: list[dict[str, Any]]
    rows: int
    series: int
    min_ts: int | None
    max_ts: int | None
    first: str | None
    last: str | None
    segments: int
    partitions: int
    segment_bytes: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SettingChange:
    """``config set``: the value before and after, and what a retention expired."""

    database: str
    key: str
    old: Any
    new: Any
    dry_run: bool
    expired: ExpiryPreview | None = None
    warning: str | None = None  # the change is committed, but something after it failed

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "key": self.key,
            "old": self.old,
            "new": self.new,
            "warning": self.warning,
            "dry_run": self.dry_run,
            "expired": self.expired.to_json() if self.expired is not None else None,
        }
