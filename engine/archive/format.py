"""The backup archive format: a directory, ``manifest.json`` and zstd Parquet files.

Layout::

    <archive>/manifest.json
    <archive>/<table dir>/<NNNNNN>.parquet  one file per table and time partition; <table dir>
                                            is the table's escaped name (engine/names.py)

Every Parquet file is a valid tsadmin segment: ``ts`` (UTC timestamp in the
database precision), tag columns (string), field columns; rows unique by
(tags, ts) and sorted by them. Any Parquet reader (DuckDB, pandas, Spark)
reads them with no tsadmin installed; in a full archive, the files of a table
hold exactly its rows after upserts.

``manifest.json`` (UTF-8 JSON)::

    {
      "format": "tsadmin-archive",
      "version": 1,
      "tool_version": "0.4.0",
      "kind": "database" | "table",
      "database": "metrics",
      "settings": {...the database settings, as in its manifest...},
      "snapshot_lsn": 1234,          # every transaction committed up to this LSN is in
      "created": "2026-11-22T21:00:00Z",
      "base": null | {"name": "<archive dir name>", "snapshot_lsn": 1000,
                      "manifest_sha256": "<hex of the base's manifest.json bytes>"},
      "dropped_tables": [],          # incremental: tables of the base gone since
      "uuid": "6f1c…", "epoch": 1,   # (0.3, optional) the source database's identity and
                                     # epoch: a standby seeded from it keeps them
      "checksum": "<hex>",           # SHA-256 of this object without "checksum",
                                     # serialised with sorted keys and no spaces
      "tables": {
        "cpu": {
          "tags": ["host"], "fields": {"usage": "float64"},
          "mode": "full" | "delta",  # delta: rows added since the base, upserted onto it
          "replaced_partitions": [1699920000000000000],  # (0.4, delta only, present only
                                     # when not empty) partitions that lost rows since the
                                     # base (a delete, an expiry): the base chain's files
                                     # of these partitions are dropped, and this archive's
                                     # files hold each one's whole rows (none: all gone)
          "rows": 5000,
          "files": [{"path": "cpu/000001.parquet", "partition": 1700000000000000000,
                     "rows": 5000, "bytes": 81234, "sha256": "...",
                     "min_ts": 1700000000000000000, "max_ts": 1700000990000000000}]
        }
      }
    }

Reading is strict, because an archive may come from anywhere: the manifest
must be a plain file of at most 64 MiB; it is decoded against a typed schema
(every field's type and range; unknown keys, at any level, are refused, as a
format change bumps ``version``); names follow ``engine/names.py``; each
``path`` is exactly ``<table dir>/<6 to 12 digits>.parquet`` (the escaped name; an
archive from before 0.3 may use the name itself when it is of the old rule) and listed once;
``partition`` is an integer partition start of the archive's width and holds
``min_ts <= max_ts``; a table's ``rows`` is the sum of its files'. Before a
restore uses a file, its SHA-256 is checked and its footer read (a row count
equal to the declared one, the table's columns, each column chunk whole, the
row groups' ``ts`` statistics inside ``min_ts..max_ts``); ``backup verify``
also decodes every page (page CRCs, order, timestamps exactly spanning
``min_ts..max_ts``), a batch at a time. Settings this build cannot
honour are replaced and said (``wal_level byrl`` restores as ``sync``).

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from engine.arrowmods import pa, pc, pq
from engine.errors import EngineError, InvalidArgument, NotFound, Remedy, VerificationFailed
from engine.names import check_archive_file_path, is_valid, validate_name
from engine.settings import LIMITS, REPLICA_DEFAULTS, Settings, WalLevel
from engine.storage.merge import is_sorted
from engine.storage.schema import TS, TableSchema

MANIFEST = "manifest.json"
FORMAT = "tsadmin-archive"
VERSION = 1

# Limits on what an archive may declare, so a hostile manifest costs a bounded
# amount of memory and time before it is refused.
MAX_MANIFEST_BYTES = 64 << 20
MAX_TABLES = 100_000
MAX_FILES = 1_000_000
MAX_FILE_ROWS = 50_000_000  # our writers cut files far below this
MAX_FILE_BYTES = 1 << 40
# Rows are decoded in batches of this many when an archive file's contents are checked.
CHECK_BATCH_ROWS = 65_536
CHECK_THREADS = 2  # files checked at a time

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=65535)]  # names.py says the rest
FieldType = Literal["float64", "int64", "uint64", "bool", "string"]


class _Header(msgspec.Struct):
    format: Any = None
    version: Any = None


class _File(msgspec.Struct, forbid_unknown_fields=True):
    path: ShortText
    partition: Int64
    rows: Annotated[int, msgspec.Meta(ge=0, le=MAX_FILE_ROWS)]
    bytes: Annotated[int, msgspec.Meta(ge=0, le=MAX_FILE_BYTES)]
    sha256: Hex64
    min_ts: Int64
    max_ts: Int64


class _Table(msgspec.Struct, forbid_unknown_fields=True):
    tags: list[Name]
    fields: dict[Name, FieldType]
    mode: Literal["full", "delta"]
    rows: Count
    files: list[_File]
    replaced_partitions: list[Int64] = []


class _Settings(msgspec.Struct, forbid_unknown_fields=True):
    precision: Literal["ms", "us", "ns"]
    wal_level: Literal["off", "sync", "flush", "byrl"]
    wal_fsync_period: Annotated[int, msgspec.Meta(ge=0, le=180_000)]
    checkpoint_interval: Annotated[str, msgspec.Meta(max_length=32)]
    partition: Annotated[str, msgspec.Meta(max_length=32)]
    # added in 0.2: archives written before have none and get the defaults
    max_line_bytes: int = LIMITS["max_line_bytes"][0]
    max_tags_per_series: int = LIMITS["max_tags_per_series"][0]
    max_fields_per_table: int = LIMITS["max_fields_per_table"][0]
    # added in 0.3 (replication), present only when set
    replicas: list[Annotated[str, msgspec.Meta(max_length=4096)]] = []
    replica_hold_bytes: Count = REPLICA_DEFAULTS["replica_hold_bytes"]
    replica_hold_age: Annotated[str, msgspec.Meta(max_length=32)] = REPLICA_DEFAULTS[
        "replica_hold_age"
    ]
    replica_timeout: Annotated[str, msgspec.Meta(max_length=32)] = REPLICA_DEFAULTS[
        "replica_timeout"
    ]
    # added in 0.4 (the replica store's upkeep), present only when set
    replica_snapshot_interval: Annotated[str, msgspec.Meta(max_length=32)] = REPLICA_DEFAULTS[
        "replica_snapshot_interval"
    ]
    replica_snapshot_bytes: Count = REPLICA_DEFAULTS["replica_snapshot_bytes"]
    replica_pitr_window: Annotated[str, msgspec.Meta(max_length=32)] = "7d"
    # added in 0.4 (retention), present only when set
    retention: Annotated[str, msgspec.Meta(max_length=32)] = "none"


class _Base(msgspec.Struct, forbid_unknown_fields=True):
    name: ShortText
    snapshot_lsn: Count
    manifest_sha256: Hex64


class _Manifest(msgspec.Struct, forbid_unknown_fields=True):
    format: Literal["tsadmin-archive"]
    version: Literal[1]
    tool_version: ShortText
    kind: Literal["database", "table"]
    database: ShortText
    settings: _Settings
    snapshot_lsn: Count
    created: ShortText
    base: _Base | None
    dropped_tables: list[Name]
    checksum: Hex64
    tables: dict[Name, _Table]
    uuid: Annotated[str, msgspec.Meta(pattern="^([0-9a-f-]{36})?$")] = ""
    epoch: Count = 0


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
    replaced_partitions: list[int] = field(default_factory=list)  # delta only

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.schema.to_json(),
            "mode": self.mode,
            "rows": self.rows,
            "files": [f.to_json() for f in self.files],
            # only when there are some: archives without deletes stay readable by 0.3
            **(
                {"replaced_partitions": self.replaced_partitions}
                if self.replaced_partitions
                else {}
            ),
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
    # What a restore changes because this build cannot honour the archive as written
    # (for example a wal_level that needs replication): said to the operator.
    notes: list[str] = field(default_factory=list)
    uuid: str = ""  # the source database's identity ("": an archive from before 0.3)
    epoch: int = 0

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
        } | ({"uuid": self.uuid, "epoch": self.epoch} if self.uuid else {})

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


def read_manifest_bytes(archive: Path) -> bytes:
    """The manifest's bytes, refused unless it is a plain file of a sane size."""
    path = archive / MANIFEST
    if not archive.exists():
        raise NotFound(f"archive {archive} does not exist", hint="list the archives of the store")
    if path.is_symlink() or not path.is_file():
        raise VerificationFailed(f"{archive}: no {MANIFEST}; not a tsadmin archive")
    with path.open("rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise VerificationFailed(
            f"{path}: the manifest is larger than {MAX_MANIFEST_BYTES >> 20} MiB; "
            "refused without reading it"
        )
    return data


def load(archive: Path) -> ArchiveManifest:
    """Read and validate an archive's manifest: every field by type and range, then
    names, paths, partitions, counts and the checksum. A manifest that fails any check
    raises :class:`VerificationFailed` naming the field."""
    return decode(read_manifest_bytes(archive), archive / MANIFEST)


def decode(data: bytes, path: Path | str) -> ArchiveManifest:
    """An archive manifest's bytes, validated as :func:`load` says; ``path`` names it in
    errors (a file, or an object of a store)."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise VerificationFailed(
            f"{path}: the manifest is larger than {MAX_MANIFEST_BYTES >> 20} MiB; refused"
        )
    try:
        header = msgspec.json.decode(data, type=_Header)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise VerificationFailed(f"{path}: not a tsadmin archive manifest ({exc})") from exc
    if header.format != FORMAT:
        raise VerificationFailed(f"{path}: not a tsadmin archive manifest")
    if header.version != VERSION:
        raise VerificationFailed(
            f"{path}: archive version {header.version!r} is not supported "
            f"(this build reads {VERSION})",
            hint="restore it with the tsadmin version that wrote it",
        )
    try:
        typed = msgspec.json.decode(data, type=_Manifest)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise VerificationFailed(f"{path}: malformed manifest: {exc}") from exc
    body = json.loads(data)
    stored = body.pop("checksum")
    if stored != _checksum(body):
        raise VerificationFailed(f"{path}: the manifest was altered (its checksum does not match)")
    try:
        return _build(typed)
    except (ValueError, EngineError) as exc:
        raise VerificationFailed(f"{path}: malformed manifest: {exc}") from exc


def _build(typed: _Manifest) -> ArchiveManifest:
    _name(typed.database, "database", "$.database")
    notes: list[str] = []
    settings = _settings(typed.settings, notes)
    manifest = ArchiveManifest(
        kind=typed.kind,
        database=typed.database,
        settings=settings,
        snapshot_lsn=typed.snapshot_lsn,
        created=typed.created,
        tool_version=typed.tool_version,
        base=None,
        dropped_tables=[
            _name(t, "table", f"$.dropped_tables[{i}]") for i, t in enumerate(typed.dropped_tables)
        ],
        notes=notes,
        uuid=typed.uuid,
        epoch=typed.epoch,
    )
    if typed.base is not None:
        _name(typed.base.name, "archive", "$.base.name")
        manifest.base = msgspec.structs.asdict(typed.base)
    if len(typed.tables) > MAX_TABLES:
        raise ValueError(f"$.tables lists {len(typed.tables)} tables (at most {MAX_TABLES})")
    seen: set[str] = set()
    for name, table in typed.tables.items():
        manifest.tables[name] = _table(name, table, settings, seen)
        if len(seen) > MAX_FILES:
            raise ValueError(f"the archive lists more than {MAX_FILES} files")
    return manifest


def _name(name: str, kind: str, where: str) -> str:
    if not is_valid(kind, name):
        raise ValueError(f"{where}: invalid {kind} name {name!r}")
    return name


def _settings(raw: _Settings, notes: list[str]) -> Settings:
    try:
        settings = Settings.build(
            precision=raw.precision,
            wal_level=raw.wal_level,
            wal_fsync_period=raw.wal_fsync_period,
            checkpoint_interval=raw.checkpoint_interval,
            partition=raw.partition,
            max_line_bytes=raw.max_line_bytes,
            max_tags_per_series=raw.max_tags_per_series,
            max_fields_per_table=raw.max_fields_per_table,
            replicas=raw.replicas,
            replica_hold_bytes=raw.replica_hold_bytes,
            replica_hold_age=raw.replica_hold_age,
            replica_timeout=raw.replica_timeout,
            replica_snapshot_interval=raw.replica_snapshot_interval,
            replica_snapshot_bytes=raw.replica_snapshot_bytes,
            replica_pitr_window=raw.replica_pitr_window,
            retention=raw.retention,
        )
    except InvalidArgument as exc:
        raise ValueError(f"$.settings: {exc.message}") from exc
    if settings.wal_level is WalLevel.BYRL and not settings.replicas:
        notes.append(
            "the archive's wal_level byrl names no replica store: restored with wal_level sync"
        )
        settings = Settings(**{**settings.__dict__, "wal_level": WalLevel.SYNC})
    return settings


def _table(name: str, raw: _Table, settings: Settings, seen: set[str]) -> ArchiveTable:
    where = f"$.tables[{name!r}]"
    _name(name, "table", where)
    for tag in raw.tags:
        _name(tag, "tag", f"{where}.tags")
    for column in raw.fields:
        _name(column, "field", f"{where}.fields")
    if TS in raw.tags or TS in raw.fields:
        raise ValueError(f"{where}: {TS!r} is the timestamp, not a tag or field")
    if len(set(raw.tags)) != len(raw.tags) or set(raw.tags) & set(raw.fields):
        raise ValueError(f"{where}: a name is listed twice among tags and fields")
    width = settings.partition_units
    files = []
    for i, item in enumerate(raw.files):
        at = f"{where}.files[{i}]"
        try:
            check_archive_file_path(item.path, name)
        except ValueError as exc:
            raise ValueError(f"{at}.path: {exc}") from exc
        if item.path in seen:
            raise ValueError(f"{at}.path: {item.path!r} is listed twice")
        seen.add(item.path)
        if item.partition % width:
            raise ValueError(f"{at}.partition: {item.partition} is not a partition start")
        if not item.partition <= item.min_ts <= item.max_ts < item.partition + width:
            raise ValueError(
                f"{at}: time range {item.min_ts}..{item.max_ts} does not lie in "
                f"partition {item.partition}"
            )
        files.append(ArchiveFile(**msgspec.structs.asdict(item)))
    for p in raw.replaced_partitions:
        if p % width:
            raise ValueError(f"{where}.replaced_partitions: {p} is not a partition start")
    if raw.replaced_partitions and raw.mode != "delta":
        raise ValueError(f"{where}.replaced_partitions: only a delta table replaces partitions")
    replaced = list(raw.replaced_partitions)
    if len(set(replaced)) != len(replaced):
        raise ValueError(f"{where}.replaced_partitions: a partition is listed twice")
    schema = TableSchema(list(raw.tags), dict(raw.fields))
    table = ArchiveTable(schema, raw.mode, files, replaced)
    if table.rows != raw.rows:
        raise ValueError(f"{where}.rows: {raw.rows}, its files hold {table.rows}")
    return table


def check_archive_name(name: str) -> str:
    """An archive's directory name: letters, digits, ``_ . -``; never a path."""
    return validate_name("archive", name)


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
        if path.is_symlink() or not path.is_file():
            problems.append(f"{rel}: missing" if not path.exists() else f"{rel}: not a file")
        elif path.stat().st_size != info.bytes:
            problems.append(f"{rel}: {path.stat().st_size} bytes, the manifest says {info.bytes}")
    return problems


def check_contents(archive: Path, manifest: ArchiveManifest) -> list[str]:
    """Every listed file against the manifest: its SHA-256, then its decoded contents
    (page CRCs, columns, row count, timestamps inside the declared range and partition),
    batch by batch so memory stays bounded whatever a file claims to hold."""
    return _check_files(archive, manifest, _content_problem)


def check_digests(archive: Path, manifest: ArchiveManifest) -> list[str]:
    """Every listed file's SHA-256, and its footer's row count and columns."""
    return _check_files(archive, manifest, _footer_problem)


FileCheck = Callable[[Path, ArchiveFile, pa.Schema, list[str]], "str | None"]


def _check_files(archive: Path, manifest: ArchiveManifest, check: FileCheck) -> list[str]:
    """The digest of every listed file that is present with its declared size (check_tree
    reports the others), then ``check`` on those whose digest matches; files checked two
    at a time (hashing and decoding release the GIL), problems in the manifest's order."""
    precision = manifest.settings.precision
    jobs = []
    for table in manifest.tables.values():
        expected = table.schema.arrow_schema(precision)
        for info in table.files:
            jobs.append((info, expected, table.schema.tags))

    def one(job: tuple[ArchiveFile, pa.Schema, list[str]]) -> str | None:
        info, expected, tags = job
        path = archive / info.path
        if path.is_symlink() or not path.is_file() or path.stat().st_size != info.bytes:
            return None
        if sha256_file(path) != info.sha256:
            return f"{info.path}: SHA-256 does not match the manifest"
        problem = check(path, info, expected, tags)
        return f"{info.path}: {problem}" if problem else None

    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        return [p for p in pool.map(one, jobs) if p is not None]


def _footer_problem(
    path: Path, info: ArchiveFile, expected: pa.Schema, _tags: list[str]
) -> str | None:
    try:
        footer = pq.ParquetFile(path)
        rows, schema = footer.metadata.num_rows, footer.schema_arrow.remove_metadata()
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"not readable as Parquet ({exc})"
    if rows != info.rows:
        return f"its footer says {rows} rows, the manifest says {info.rows}"
    if not schema.equals(expected):
        return "its footer's columns do not match the manifest"
    if not _chunks_whole(footer.metadata):
        return "a column chunk holds fewer or more values than its row group's rows"
    return _ts_statistics_problem(footer.metadata, info)


def _ts_statistics_problem(metadata: pq.FileMetaData, info: ArchiveFile) -> str | None:
    """The row groups' ``ts`` statistics against the declared time range: a file whose
    rows lie outside its range (and so its partition) is refused without decoding."""
    if not metadata.num_row_groups:
        return None
    # named through a column chunk, not ``metadata.schema``: in pyarrow 26 every
    # ParquetSchema object keeps the whole footer (~0.2 MB here) and is never freed
    first = metadata.row_group(0)
    names = [first.column(i).path_in_schema for i in range(metadata.num_columns)]
    if TS not in names:
        return None
    column = names.index(TS)
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            return "its timestamps carry no statistics"
        low, high = stats.min_raw, stats.max_raw  # the stored int64, in the file's unit
        if low < info.min_ts or high > info.max_ts:
            return (
                f"timestamps run from {low} to {high}, the manifest says "
                f"{info.min_ts} to {info.max_ts}"
            )
    return None


def _content_problem(
    path: Path, info: ArchiveFile, expected: pa.Schema, tags: list[str]
) -> str | None:
    try:
        reader = pq.ParquetFile(path, page_checksum_verification=True)
        if reader.metadata.num_rows != info.rows:
            return f"{reader.metadata.num_rows} rows, the manifest says {info.rows}"
        if not reader.schema_arrow.remove_metadata().equals(expected):
            return "columns differ from the table's schema"
        rows, low, high, last = 0, None, None, None
        for batch in reader.iter_batches(batch_size=CHECK_BATCH_ROWS):
            rows += batch.num_rows
            if rows > info.rows:
                return f"decodes to more than the {info.rows} rows it declares"
            keys = pa.Table.from_batches([batch]).select([*tags, TS])
            joined = keys if last is None else pa.concat_tables([last, keys])
            if not is_sorted(joined, tags):
                return "rows are not sorted by series and time"
            last = keys.slice(keys.num_rows - 1) if keys.num_rows else last
            ts = batch.column(TS).cast(pa.int64())
            if ts.null_count:
                return "rows without a timestamp"
            if batch.num_rows:
                lo, hi = pc.min(ts).as_py(), pc.max(ts).as_py()
                low = lo if low is None else min(low, lo)
                high = hi if high is None else max(high, hi)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"not readable as Parquet ({exc})"
    if rows != info.rows:
        return f"decodes to {rows} rows, the manifest says {info.rows}"
    if rows and (low, high) != (info.min_ts, info.max_ts):
        return (
            f"timestamps run from {low} to {high}, the manifest says {info.min_ts} to {info.max_ts}"
        )
    return None


def _chunks_whole(metadata: pq.FileMetaData) -> bool:
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for column in range(row_group.num_columns):
            if row_group.column(column).num_values != row_group.num_rows:
                return False
    return True


def require_sound(archive: Path, manifest: ArchiveManifest) -> None:
    """Raise :class:`VerificationFailed` unless every file is present, listed and intact.

    Every byte is checked against its SHA-256 and every footer against the manifest
    (rows, columns, each column chunk whole, the row groups' time statistics inside the
    declared range): what restore, a standby's seeding and an incremental backup's base
    need. Rows are not decoded here (that would cost restore several times the copy):
    what only an archive crafted to pass its own digests could get wrong, rows out of
    order or outside their range, is caught where segments are decoded (see
    :mod:`engine.storage.segment`), and ``backup verify`` decodes every column and page."""
    _raise_problems(archive, check_tree(archive, manifest))
    require_files_sound(archive, manifest)


def require_tree_sound(archive: Path, manifest: ArchiveManifest) -> None:
    """The tree part of :func:`require_sound`: no links, no unlisted, missing or
    wrong-sized file (so its files may be read, before their contents are checked)."""
    _raise_problems(archive, check_tree(archive, manifest))


def require_files_sound(archive: Path, manifest: ArchiveManifest) -> None:
    """The contents part of :func:`require_sound` (after :func:`require_tree_sound`)."""
    _raise_problems(archive, check_digests(archive, manifest))


def _raise_problems(archive: Path, problems: list[str]) -> None:
    if problems:
        raise VerificationFailed(
            f"archive {archive.name} is damaged: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            hint="verifying the archive lists every problem",
        ).advise(Remedy.VERIFY_ARCHIVE, str(archive))
