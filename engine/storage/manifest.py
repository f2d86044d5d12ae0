"""The database manifest: settings, table schemas, live segments, checkpoint LSN.

File: ``<database>/manifest.json``, UTF-8 JSON, replaced atomically (temporary
file, fsync, rename, fsync of the directory), so a crash leaves the old or the
new manifest whole. Its contents::

    {
      "format": "tsadmin-manifest",
      "version": 1,
      "database": "metrics",
      "settings": {"precision": "ns", "wal_level": "sync", "wal_fsync_period": 1000,
                   "checkpoint_interval": "1m", "partition": "1d"},
      "checkpoint_lsn": 120,       # every WAL record with LSN <= this is in segments
      "next_txn": 57,              # first transaction id not yet used
      "next_segment": 9,           # first segment sequence number not yet used
      "uuid": "6f1c…",             # the database's identity, made at db create (0.3)
      "epoch": 1,                  # its history's epoch: a promoted standby takes N+1
      "tables": {
        "cpu": {
          "tags": ["host"], "fields": {"usage": "float64"},
          "segments": [
            {"file": "tables/cpu/p1700000000000000000/000007.parquet",
             "partition": 1700000000000000000, "seq": 7, "rows": 5000,
             "bytes": 81234, "min_ts": 1700000000000000000, "max_ts": 1700000990000000000,
             "sha256": "<hex digest of the whole file>",
             "footer": "<hex digest of the file's Parquet footer>"}
          ]
        }
      },
      "checksum": "5e0f9a1c"       # CRC32C (hex) of this object without "checksum",
    }                              # serialised with sorted keys and no spaces

``uuid`` and ``epoch`` (added in 0.3; a manifest without them is still read,
and the next writer gives the database a new identity) name the database
across copies: the WAL header, replicas and archives carry them.

``sha256`` (added in 0.2; a manifest without it is still read, and its
segments are then checked by their Parquet page CRCs only) is the digest of
the segment file as written; every read and every backup checks it.

``footer`` (added in 0.5; without it a read bounded by time or tags checks the
whole file's digest) is the digest of the file's last ``8 + n`` bytes: the
Parquet footer of ``n`` bytes, its length and ``PAR1``. A bounded read checks it
and the page CRCs of the pages it decodes, so it need not read the whole file.

Segments of one partition are merged in ``seq`` order: a later segment's
values win (upsert). ``partition`` is the first timestamp of the partition in
the database's precision. ``file`` is relative to the database directory and
never absolute nor contains ``..``. A manifest whose checksum does not match,
or whose version is unknown, is corruption: the database does not open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.crc import crc32c
from engine.errors import Corruption
from engine.io.fileio import IO
from engine.settings import Settings
from engine.storage.schema import TableSchema

FILENAME = "manifest.json"
FORMAT = "tsadmin-manifest"
VERSION = 1


@dataclass(frozen=True)
class SegmentInfo:
    file: str
    partition: int
    seq: int
    rows: int
    bytes: int
    min_ts: int
    max_ts: int
    sha256: str = ""
    footer: str = ""  # SHA-256 of the Parquet footer (metadata, its length, PAR1): 0.5

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if not self.footer:
            del data["footer"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentInfo:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k not in ("sha256", "footer")}
        return cls(**fields, sha256=str(data.get("sha256", "")), footer=str(data.get("footer", "")))


@dataclass
class TableEntry:
    schema: TableSchema
    segments: list[SegmentInfo] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**self.schema.to_json(), "segments": [s.to_json() for s in self.segments]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TableEntry:
        segments = [SegmentInfo.from_json(s) for s in data.get("segments", [])]
        return cls(TableSchema.from_json(data), segments)


@dataclass
class Manifest:
    database: str
    settings: Settings
    checkpoint_lsn: int = 0
    next_txn: int = 1
    next_segment: int = 1
    tables: dict[str, TableEntry] = field(default_factory=dict)
    uuid: str = ""  # "" only in manifests written before identities existed
    epoch: int = 0

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "database": self.database,
            "settings": self.settings.to_json(),
            "checkpoint_lsn": self.checkpoint_lsn,
            "next_txn": self.next_txn,
            "next_segment": self.next_segment,
            "tables": {name: entry.to_json() for name, entry in self.tables.items()},
        }
        if self.uuid:
            body |= {"uuid": self.uuid, "epoch": self.epoch}
        body["checksum"] = _checksum(body)
        return body

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), indent=1, sort_keys=True).encode() + b"\n"

    def segment_files(self) -> set[str]:
        return {seg.file for entry in self.tables.values() for seg in entry.segments}


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return f"{crc32c(canonical):08x}"


def decode(data: bytes, path: Path) -> Manifest:
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Corruption(f"{path}: manifest is not valid JSON ({exc})", path=str(path)) from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise Corruption(f"{path}: not a tsadmin manifest", path=str(path))
    if body.get("version") != VERSION:
        raise Corruption(
            f"{path}: manifest version {body.get('version')} is not supported", path=str(path)
        )
    stored = body.pop("checksum", None)
    if stored != _checksum(body):
        raise Corruption(f"{path}: manifest checksum mismatch", path=str(path))
    try:
        return Manifest(
            database=body["database"],
            settings=Settings.from_json(body["settings"]),
            checkpoint_lsn=int(body["checkpoint_lsn"]),
            next_txn=int(body["next_txn"]),
            next_segment=int(body["next_segment"]),
            tables={n: TableEntry.from_json(t) for n, t in body["tables"].items()},
            uuid=str(body.get("uuid", "")),
            epoch=int(body.get("epoch", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Corruption(f"{path}: manifest is missing a field ({exc})", path=str(path)) from exc


def new_identity() -> tuple[str, int]:
    """A new database's UUID and first epoch."""
    import uuid

    return str(uuid.uuid4()), 1


def load(db_dir: Path) -> Manifest:
    path = db_dir / FILENAME
    return decode(path.read_bytes(), path)


def install(db_dir: Path, manifest: Manifest) -> None:
    """Atomically replace the manifest (durable when this returns)."""
    IO.write_file_atomic(db_dir / FILENAME, manifest.encode(), "manifest.write")
