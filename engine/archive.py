"""The backup archive format: a directory, ``manifest.json`` and zstd Parquet files.

Layout::

    <archive>/manifest.json
    <archive>/<table>/<NNNNNN>.parquet      one file per table and time partition

Every Parquet file is a valid tsadmin segment: ``ts`` (UTC timestamp in the
database precision), tag columns (string), field columns; rows unique by
(tags, ts) and sorted by them. Any Parquet reader (DuckDB, pandas, Spark)
reads them with no tsadmin installed; in a full archive, the files of a table
hold exactly its rows after upserts.

``manifest.json`` (UTF-8 JSON)::

    {
      "format": "tsadmin-archive",
      "version": 1,
      "tool_version": "0.1.0",
      "kind": "database" | "table",
      "database": "metrics",
      "settings": {...the database settings, as in its manifest...},
      "snapshot_lsn": 1234,          # every transaction committed up to this LSN is in
      "created": "2026-11-22T21:00:00Z",
      "base": null | {"name": "<archive dir name>", "snapshot_lsn": 1000,
                      "manifest_sha256": "<hex of the base's manifest.json bytes>"},
      "dropped_tables": [],          # incremental: tables of the base gone since
      "checksum": "<hex>",           # SHA-256 of this object without "checksum",
                                     # serialised with sorted keys and no spaces
      "tables": {
        "cpu": {
          "tags": ["host"], "fields": {"usage": "float64"},
          "mode": "full" | "delta",  # delta: rows changed since the base, upserted onto it
          "rows": 5000,
          "files": [{"path": "cpu/000001.parquet", "partition": 1700000000000000000,
                     "rows": 5000, "bytes": 81234, "sha256": "...",
                     "min_ts": 1700000000000000000, "max_ts": 1700000990000000000}]
        }
      }
    }

A full archive has ``base: null`` and every table ``full``. An incremental
archive names its base, which must sit in the same directory with exactly the
recorded manifest bytes; restoring it restores the base chain first. Paths
are relative, never absolute, never contain ``..``; table names follow the
naming rule; an archive holds no links and no file its manifest does not list.
Archives are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.parquet as pq

from engine.errors import InvalidArgument, VerificationFailed
from engine.schema import TableSchema
from engine.settings import NAME_RE, Settings

ARCHIVE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MANIFEST = "manifest.json"
FORMAT = "tsadmin-archive"
VERSION = 1


@dataclass
class ArchiveFile:
    path: str
    partition: int
    rows: int
    bytes: int
    sha256: str
    min_ts: int
    max_ts: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ArchiveTable:
    schema: TableSchema
    mode: str = "full"
    files: list[ArchiveFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.schema.to_json(),
            "mode": self.mode,
            "rows": self.rows,
            "files": [f.to_json() for f in self.files],
        }


@dataclass
class ArchiveManifest:
    kind: str
    database: str
    settings: Settings
    snapshot_lsn: int
    created: str
    tool_version: str
    base: dict[str, Any] | None = None
    dropped_tables: list[str] = field(default_factory=list)
    tables: dict[str, ArchiveTable] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def size(self) -> int:
        """Bytes of all its Parquet files."""
        return sum(f.bytes for t in self.tables.values() for f in t.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "tool_version": self.tool_version,
            "kind": self.kind,
            "database": self.database,
            "settings": self.settings.to_json(),
            "snapshot_lsn": self.snapshot_lsn,
            "created": self.created,
            "base": self.base,
            "dropped_tables": list(self.dropped_tables),
            "tables": {name: t.to_json() for name, t in self.tables.items()},
        }

    def encode(self) -> bytes:
        body = self.to_json()
        body["checksum"] = _checksum(body)
        return json.dumps(body, indent=1, sort_keys=True).encode() + b"\n"


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load(archive: Path) -> ArchiveManifest:
    """Read and validate an archive's manifest (structure, version, names, paths)."""
    path = archive / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise VerificationFailed(f"{archive}: no {MANIFEST}; not a tsadmin archive")
    try:
        body = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationFailed(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise VerificationFailed(f"{path}: not a tsadmin archive manifest")
    if body.get("version") != VERSION:
        raise VerificationFailed(
            f"{path}: archive version {body.get('version')!r} is not supported "
            f"(this build reads {VERSION})",
            hint="restore it with the tsadmin version that wrote it",
        )
    stored = body.pop("checksum", None)
    if stored != _checksum(body):
        raise VerificationFailed(f"{path}: the manifest was altered (its checksum does not match)")
    try:
        return _decode(body)
    except (KeyError, TypeError, ValueError, InvalidArgument) as exc:
        raise VerificationFailed(f"{path}: malformed manifest ({exc})") from exc


def _decode(body: dict[str, Any]) -> ArchiveManifest:
    if body["kind"] not in ("database", "table"):
        raise ValueError(f"unknown kind {body['kind']!r}")
    _check_name(body["database"], "database")
    manifest = ArchiveManifest(
        kind=body["kind"],
        database=body["database"],
        settings=Settings.from_json(body["settings"]),
        snapshot_lsn=int(body["snapshot_lsn"]),
        created=str(body["created"]),
        tool_version=str(body.get("tool_version", "")),
        base=body.get("base"),
        dropped_tables=[_check_name(t, "table") for t in body.get("dropped_tables", [])],
    )
    for name, table in body["tables"].items():
        _check_name(name, "table")
        schema = TableSchema.from_json(table)
        for column in [*schema.tags, *schema.fields]:
            _check_name(column, "column")
        files = [
            ArchiveFile(**{k: f[k] for k in ArchiveFile.__dataclass_fields__})
            for f in table["files"]
        ]
        for item in files:
            check_relative_path(item.path, name)
        if table.get("mode", "full") not in ("full", "delta"):
            raise ValueError(f"table {name}: unknown mode {table.get('mode')!r}")
        manifest.tables[name] = ArchiveTable(schema, table.get("mode", "full"), files)
    if manifest.base is not None:
        check_archive_name(str(manifest.base.get("name", "")))
        int(manifest.base["snapshot_lsn"])
        str(manifest.base["manifest_sha256"])
    return manifest


def check_archive_name(name: str) -> str:
    """An archive's directory name: letters, digits, ``_ . -``; never a path."""
    if not ARCHIVE_NAME_RE.match(name) or name in (".", ".."):
        raise InvalidArgument(
            f"invalid archive name {name!r}", hint="use letters, digits, '_', '.', '-' (up to 128)"
        )
    return name


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"invalid {what} name {name!r}")
    return name


def check_relative_path(path: str, table: str) -> None:
    """A manifest path must be ``<table>/<file>.parquet``: relative, no ``..``, no tricks."""
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or len(pure.parts) != 2:
        raise ValueError(f"unsafe path {path!r} in the manifest")
    if pure.parts[0] != table or not pure.name.endswith(".parquet"):
        raise ValueError(f"path {path!r} is not a Parquet file of table {table}")


def check_tree(archive: Path, manifest: ArchiveManifest) -> list[str]:
    """Problems with what is on disk: links, unlisted files, missing or wrong-sized files."""
    problems = []
    listed = {f.path: f for t in manifest.tables.values() for f in t.files}
    for item in sorted(archive.rglob("*")):
        rel = item.relative_to(archive).as_posix()
        if item.is_symlink():
            problems.append(f"{rel}: is a link (archives hold none)")
        elif item.is_file() and rel != MANIFEST and rel not in listed:
            problems.append(f"{rel}: not listed in the manifest")
    for rel, info in listed.items():
        path = archive / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != info.bytes:
            problems.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {info.bytes}")
    return problems


def check_checksums(archive: Path, manifest: ArchiveManifest) -> list[str]:
    problems = []
    for table in manifest.tables.values():
        for info in table.files:
            path = archive / info.path
            if path.is_file() and not path.is_symlink() and sha256_file(path) != info.sha256:
                problems.append(f"{info.path}: SHA-256 does not match the manifest")
    return problems


def check_footers(archive: Path, manifest: ArchiveManifest, *, read_data: bool) -> list[str]:
    """Each Parquet file's row count and columns against the manifest (and, with
    ``read_data``, that every page decodes)."""
    problems = []
    for name, table in manifest.tables.items():
        expected = table.schema.arrow_schema(manifest.settings.precision).remove_metadata()
        for info in table.files:
            file = archive / info.path
            if not file.is_file() or file.is_symlink():
                continue
            try:
                meta = pq.read_metadata(file)
                schema = pq.read_schema(file).remove_metadata()
                if read_data:
                    pq.read_table(file)
            except Exception as exc:
                problems.append(f"{info.path}: not readable as Parquet ({exc})")
                continue
            if meta.num_rows != info.rows:
                problems.append(f"{info.path}: {meta.num_rows} rows, the manifest says {info.rows}")
            if not schema.equals(expected):
                problems.append(f"{info.path}: columns differ from table {name}'s schema")
    return problems


def require_sound(archive: Path, manifest: ArchiveManifest) -> None:
    """Raise :class:`VerificationFailed` unless every file is present, listed and intact."""
    problems = (
        check_tree(archive, manifest)
        or check_checksums(archive, manifest)
        or check_footers(archive, manifest, read_data=False)
    )
    if problems:
        raise VerificationFailed(
            f"archive {archive.name} is damaged: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            hint=f"'tsadmin backup verify {archive}' lists every problem",
        )
