"""Backups: create, list, verify and prune archives (format: ``engine/archive/format.py``).

A backup is one consistent snapshot: the manifest's segments plus the
committed rows still in the WAL, read like any reader does, without the
writer lock, so an ingest running meanwhile is neither blocked nor disturbed.
The segment files are opened right after the snapshot is taken (retrying if
a compaction removed one first), so they stay readable whatever the writer
does next. A partition with no WAL rows whose segments hold no key twice
(their time ranges are disjoint, or where they overlap the rows differ in key:
:mod:`engine.storage.disjoint`) has its segments copied byte for byte; any
other partition is merged once (upserts applied). An incremental backup
reads its base chain's manifests, not its files: a partition whose base files
are all still segments (by digest) adds its new segments and memtable rows, any
other is carried whole (see :func:`_delta_table`). The archive is built
in a staging directory (beside its final place in a local store, else a
temporary directory), verified from disk (digests and footers), and only then
published to its store (``engine/archive/store.py``: files, then the manifest as
the commit), so no archive is ever visible before it is verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO as TypingIO
from typing import Any, BinaryIO

from engine.archive import format as archive
from engine.archive import store as archivestore
from engine.archive.format import ArchiveFile, ArchiveManifest, ArchiveTable
from engine.arrowmods import pa, pq
from engine.db import health
from engine.db.database import Database
from engine.db.datadir import existing_database_dir
from engine.db.reads import View
from engine.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    VerificationFailed,
)
from engine.io import scratch
from engine.io.fileio import IO
from engine.names import archive_file_path, validate_name
from engine.storage import deletes, disjoint, mergescan, segment
from engine.storage.deletes import DeleteSpec
from engine.storage.manifest import SegmentInfo
from engine.storage.schema import TableSchema, conform
from engine.stores import Store, open_store

Progress = Callable[[int, int], None]  # (bytes done, bytes expected)
# An archive file holds at most this many rows (well under what a restore accepts,
# archive.MAX_FILE_ROWS), so reading one back never needs unbounded memory.
FILE_ROWS = 4_000_000
# Rows per batch when a partition's segments are merged into archive files.
MERGE_ROWS = 65_536
COPY_BLOCK = 8 << 20


@dataclass
class BackupOptions:
    to: str  # a store: a path, file:///path or s3://bucket/prefix
    tables: list[str] | None = None
    name: str | None = None
    incremental: bool = False
    base: str | None = None  # an archive of the same store (its name, path or URL)
    record: bool = True  # remembered as the store's last backup (engine.db.health); not snapshots


@dataclass
class BackupReport:
    archive: str
    kind: str
    database: str
    snapshot_lsn: int
    tables: int
    rows: int
    bytes: int
    files_copied: int
    files_written: int
    base: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# -- snapshot -------------------------------------------------------------------------


@contextlib.contextmanager
def _snapshot(
    db_dir: Path, name: str, attempts: int = 20
) -> Iterator[tuple[View, dict[str, TypingIO[bytes]]]]:
    """A read view plus open handles on every segment it lists (kept until the end)."""
    for attempt in range(attempts):
        view = Database.open(db_dir, name, readonly=True).view()
        handles: dict[str, TypingIO[bytes]] = {}
        try:
            for entry_name, entry in view.manifest.tables.items():
                if entry_name in view.hidden_tables:
                    continue
                for info in entry.segments:
                    handles[info.file] = (db_dir / info.file).open("rb")
        except FileNotFoundError:
            for handle in handles.values():
                handle.close()
            if attempt == attempts - 1:
                raise
            time.sleep(0.02)
            continue
        try:
            yield view, handles
        finally:
            for handle in handles.values():
                handle.close()
        return


# -- create ---------------------------------------------------------------------------


def create_backup(
    data_dir: Path, database: str, options: BackupOptions, progress: Progress | None = None
) -> BackupReport:
    started = time.perf_counter()
    db_dir = existing_database_dir(data_dir, database)
    store = open_store(options.to)
    local = store.local_dir
    if local is not None:
        if local.exists() and not local.is_dir():
            raise InvalidArgument(
                f"backup location {local} is a file, not a directory",
                hint="name a directory (it is created if missing)",
            )
        store.create()
        clear_dead_staging(local)
    base_name = _find_base(store, options, database) if options.incremental else None
    with _snapshot(db_dir, database) as (view, handles):
        tables = _chosen_tables(view, options.tables)
        kind = "database" if options.tables is None else "table"
        name = (
            archive.check_archive_name(options.name)
            if options.name
            else _default_name(store, database, kind, options.incremental)
        )
        if store.exists(archivestore.manifest_key(name)):
            raise AlreadyExists(
                f"archive {archivestore.describe(store, name)} already exists",
                hint="choose another archive name",
            )
        staging = archivestore.staging_directory(store, name, os.getpid())
        archivestore.remove_staging(staging)
        IO.mkdirs(staging)
        try:
            writer = _ArchiveWriter(staging, progress, _expected_bytes(view, tables))
            manifest = ArchiveManifest(
                kind=kind,
                database=database,
                settings=view.settings,
                snapshot_lsn=view.committed_lsn,
                created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                tool_version=_tool_version(),
                uuid=view.manifest.uuid,
                epoch=view.manifest.epoch,
            )
            if base_name is None:
                for table in tables:
                    manifest.tables[table] = _full_table(db_dir, view, handles, table, writer)
            else:
                # the base chain's manifests are what an incremental reads of it
                with archivestore.fetched(store, base_name, files=False) as base_dir:
                    _incremental(db_dir, view, handles, tables, base_dir, manifest, writer)
                    if local is not None:  # its files are here: present, at their sizes
                        for path, link in chain(base_dir):
                            archive.require_tree_sound(path, link)
            _finish(staging, manifest)
            # verified from disk before it is visible under its final name
            archive.require_sound(staging, archive.load(staging))
            IO.crash_point("backup.before_rename")
            name = archivestore.publish(
                store,
                staging,
                name,
                next_name=None
                if options.name
                else lambda: _default_name(store, database, kind, options.incremental),
                progress=_after(progress, writer.done),
            )
        finally:
            archivestore.remove_staging(staging)
    if options.record:
        health.record_backup(
            db_dir,
            options.to,
            archivestore.describe(store, name),
            kind,
            options.incremental,
            time.time(),
        )
    return BackupReport(
        archive=archivestore.describe(store, name),
        kind=kind,
        database=database,
        snapshot_lsn=manifest.snapshot_lsn,
        tables=len(manifest.tables),
        rows=manifest.rows,
        bytes=manifest.size,
        files_copied=writer.copied,
        files_written=writer.written,
        base=base_name,
        seconds=time.perf_counter() - started,
    )


_STAGING_RE = re.compile(r"\.(.+)\.tmp-(?P<pid>[0-9]+)")


def dead_staging(directory: Path) -> list[Path]:
    """Archives being written by processes that died (``.NAME.tmp-PID``): never archives."""
    return scratch.of_dead_processes(directory, _STAGING_RE)


def clear_dead_staging(directory: Path) -> list[str]:
    removed = []
    for entry in dead_staging(directory):
        IO.remove_tree(entry)
        removed.append(entry.name)
    return removed


def _after(progress: Progress | None, offset: int) -> Progress | None:
    """``progress`` for a second phase: its bytes count on from ``offset``."""
    if progress is None:
        return None
    shown = progress
    return lambda done, total: shown(offset + done, offset + total)


def _tool_version() -> str:
    from engine.version import __version__

    return __version__


def _chosen_tables(view: View, tables: list[str] | None) -> list[str]:
    if tables is None:
        return sorted(view.catalog)
    for table in tables:
        validate_name("table", table)
        if table not in view.catalog:
            raise NotFound(f"table {table} does not exist in database {view.manifest.database}")
    return sorted(set(tables))


def _default_name(store: Store, database: str, kind: str, incremental: bool) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = f"{database}-{kind}-{stamp}" + ("-incr" if incremental else "")
    taken = {info.key.partition("/")[0] for info in store.list(stem)}
    name, n = stem, 1
    while name in taken:
        n += 1
        name = f"{stem}.{n}"
    return name


def _expected_bytes(view: View, tables: list[str]) -> int:
    return sum(
        s.bytes
        for t in tables
        if t in view.manifest.tables
        for s in view.manifest.tables[t].segments
    )


class _ArchiveWriter:
    """Writes the archive's Parquet files into the staging directory, durably."""

    def __init__(self, staging: Path, progress: Progress | None, expected: int) -> None:
        self.staging = staging
        self.progress = progress
        self.expected = expected
        self.done = 0
        self.copied = 0
        self.written = 0
        self._next = 1

    def put(
        self,
        table: str,
        partition: int,
        data: bytes,
        rows: pa.Table | None,
        info_rows: int,
        min_ts: int,
        max_ts: int,
    ) -> ArchiveFile:
        rel = archive_file_path(table, self._next)
        self._next += 1
        target = self.staging / rel
        if not target.parent.exists():
            IO.mkdirs(target.parent)
        out = IO.open_append(target, "archive.write", create=True)
        try:
            out.write(data)
            out.fsync()
        finally:
            out.close()
        self.done += len(data)
        if self.progress:
            self.progress(self.done, max(self.expected, self.done))
        return ArchiveFile(
            rel, partition, info_rows, len(data), hashlib.sha256(data).hexdigest(), min_ts, max_ts
        )

    def copy(
        self, table: str, partition: int, handle: TypingIO[bytes], info: Any, db_dir: Path
    ) -> ArchiveFile:
        """A segment copied as it is, streamed a block at a time (never whole in memory),
        its size and SHA-256 checked against the manifest on the way."""
        rel = archive_file_path(table, self._next)
        self._next += 1
        target = self.staging / rel
        if not target.parent.exists():
            IO.mkdirs(target.parent)
        digest, size = hashlib.sha256(), 0
        handle.seek(0)
        out = IO.open_append(target, "archive.write", create=True)
        try:
            while block := handle.read(COPY_BLOCK):
                digest.update(block)
                size += len(block)
                out.write(block)
            out.fsync()
        finally:
            out.close()
        if size != info.bytes or (info.sha256 and digest.hexdigest() != info.sha256):
            raise segment.damaged(db_dir / info.file, "it does not match the manifest")
        self.copied += 1
        self.done += size
        if self.progress:
            self.progress(self.done, max(self.expected, self.done))
        return ArchiveFile(
            rel, partition, info.rows, size, digest.hexdigest(), info.min_ts, info.max_ts
        )

    def put_batches(
        self, table: str, partition: int, tags: list[str], batches: Iterable[pa.Table]
    ) -> list[ArchiveFile]:
        """Encode ``batches`` (sorted, unique by key) as files of at most FILE_ROWS rows,
        each built as the rows come: memory is a file's compressed bytes and a batch."""
        files: list[ArchiveFile] = []
        encoder: segment.Encoder | None = None
        for batch in batches:
            offset = 0
            while offset < batch.num_rows:
                if encoder is None:
                    encoder = segment.Encoder(batch.schema, tags)
                piece = batch.slice(offset, FILE_ROWS - encoder.rows)
                encoder.add(piece)
                offset += piece.num_rows
                if encoder.rows == FILE_ROWS:
                    files.append(self._put_encoded(table, partition, encoder))
                    encoder = None
        if encoder is not None and encoder.rows:
            files.append(self._put_encoded(table, partition, encoder))
        return files

    def _put_encoded(self, table: str, partition: int, encoder: segment.Encoder) -> ArchiveFile:
        rows, low, high = encoder.rows, encoder.min_ts, encoder.max_ts
        assert low is not None and high is not None
        self.written += 1
        return self.put(table, partition, encoder.finish(), None, rows, low, high)


@dataclass
class _TableNow:
    """A table in the snapshot, by partition: its segments (oldest first), the rows the
    memtables hold for it, and the deletes not yet applied to its segments."""

    segments: dict[int, list[SegmentInfo]]
    pending: dict[int, pa.Table]
    removing: list[DeleteSpec]

    @classmethod
    def of(cls, view: View, table: str) -> _TableNow:
        schema, precision = view.catalog[table], view.settings.precision
        entry = view.manifest.tables.get(table)
        infos = [] if entry is None or table in view.hidden_tables else entry.segments
        segments: dict[int, list[SegmentInfo]] = defaultdict(list)
        for info in sorted(infos, key=lambda s: s.seq):
            segments[info.partition].append(info)
        memtable = [b for m in view.memtables for b in m.batches.get(table, []) if b.num_rows]
        rows = [conform(b, schema, precision) for b in memtable]
        pending = (
            segment.split_by_partition(pa.concat_tables(rows), view.settings.partition_units)
            if rows
            else {}
        )
        return cls(dict(segments), pending, deletes.pending_for(view.deletes, table))

    def partitions(self) -> set[int]:
        return set(self.segments) | set(self.pending)

    def touched_by_deletes(self, infos: list[SegmentInfo], precision: str) -> bool:
        return any(d.touches(info, precision) for d in self.removing for info in infos)


def _full_table(
    db_dir: Path,
    view: View,
    handles: dict[str, TypingIO[bytes]],
    table: str,
    writer: _ArchiveWriter,
) -> ArchiveTable:
    now = _TableNow.of(view, table)
    result = ArchiveTable(view.catalog[table].copy())
    for partition in sorted(now.partitions()):
        infos = now.segments.get(partition, [])
        result.files += _partition_files(
            db_dir, view, handles, table, partition, infos, now, writer
        )
    return result


def _partition_files(
    db_dir: Path,
    view: View,
    handles: dict[str, TypingIO[bytes]],
    table: str,
    partition: int,
    infos: list[SegmentInfo],
    now: _TableNow,
    writer: _ArchiveWriter,
) -> list[ArchiveFile]:
    """``infos`` (segments of one partition) and the partition's memtable rows as
    archive files: the segments copied byte for byte when no key can be in two of them
    and nothing else changes them, else merged once (upserts and deletes applied)."""
    schema, precision = view.catalog[table], view.settings.precision
    if (
        infos
        and partition not in now.pending
        and not now.touched_by_deletes(infos, precision)
        and all(_same_schema(handles[info.file], schema, precision) for info in infos)
        and disjoint.no_shared_key(
            db_dir, infos, schema.tags, lambda info: _reopened(handles, info)
        )
    ):
        return [writer.copy(table, partition, handles[info.file], info, db_dir) for info in infos]
    removing = now.removing

    def kept(rows: pa.Table) -> pa.Table:
        return deletes.without_deleted(rows, table, removing, precision)

    sources: list[tuple[Iterator[pa.Table], Callable[[], Exception]]] = [
        (
            map(kept, segment.batches(db_dir, info, MERGE_ROWS, opened=_reopened(handles, info))),
            segment.unsorted(db_dir / info.file),
        )
        for info in infos
    ]
    if partition in now.pending:  # the newest rows: memtable rows, deletes already applied
        sources.append((iter([now.pending[partition]]), segment.unsorted(db_dir / "memtable")))
    return writer.put_batches(
        table, partition, schema.tags, mergescan.merged(sources, schema, precision, MERGE_ROWS)
    )


def _reopened(handles: dict[str, TypingIO[bytes]], info: SegmentInfo) -> BinaryIO:
    """A second handle on a segment the snapshot holds open (the file may be gone from
    the directory by now): reading it leaves the snapshot's own handle as it was."""
    return os.fdopen(os.dup(handles[info.file].fileno()), "rb")


def _same_schema(handle: TypingIO[bytes], schema: TableSchema, precision: str) -> bool:
    """A segment is copied as is only if it already has the table's full, current columns
    (read from its footer; the copy then checks every byte against the manifest)."""
    handle.seek(0)
    try:
        found = pq.read_schema(handle)
    except (pa.ArrowInvalid, OSError):
        return False  # a damaged footer: the decoding path says what is wrong
    return bool(found.remove_metadata() == schema.arrow_schema(precision).remove_metadata())


def _finish(staging: Path, manifest: ArchiveManifest) -> None:
    out = IO.open_append(staging / archive.MANIFEST, "archive.write", create=True)
    try:
        out.write(manifest.encode())
        out.fsync()
    finally:
        out.close()
    for directory in [*(p for p in staging.iterdir() if p.is_dir()), staging]:
        IO.fsync_dir(directory)


# -- incremental --------------------------------------------------------------------------


def _find_base(store: Store, options: BackupOptions, database: str) -> str:
    """The base archive's name: the one given (it must be in the same store), else the
    newest archive of ``database`` in the store."""
    if options.base is not None:
        name = options.base
        if "/" in options.base:
            base_store, name = archivestore.split_location(options.base)
            if base_store.describe() != store.describe():
                raise InvalidArgument(
                    "the base archive must be in the store the backup goes to",
                    hint=f"move it to {store.describe()}",
                )
        if not store.exists(archivestore.manifest_key(archive.check_archive_name(name))):
            raise NotFound(f"base archive {archivestore.describe(store, name)} does not exist")
        return name
    candidates = [a for a in _archives(store) if a.get("database") == database and "error" not in a]
    if not candidates:
        raise NotFound(
            f"no archive of {database} in {store.describe()} to be the base",
            hint="make a full (not incremental) backup first",
        )
    newest = max(candidates, key=lambda a: (a["created"], a["snapshot_lsn"]))
    return str(newest["name"])


def chain(archive_dir: Path) -> list[tuple[Path, ArchiveManifest]]:
    """The archive and its bases, oldest (the full one) first; every link checked."""
    links: list[tuple[Path, ArchiveManifest]] = []
    current = archive_dir
    seen = set()
    while True:
        manifest = archive.load(current)
        links.append((current, manifest))
        if manifest.base is None:
            return list(reversed(links))
        base = current.parent / archive.check_archive_name(manifest.base["name"])
        if base.is_symlink() or base.resolve().parent != current.resolve().parent:
            raise VerificationFailed(
                f"base archive {base.name} of {current.name} resolves outside {current.parent}"
            )
        if base.name in seen:
            raise VerificationFailed(f"{archive_dir}: the base chain loops at {base.name}")
        seen.add(base.name)
        if not (base / archive.MANIFEST).is_file():
            raise VerificationFailed(
                f"base archive {base.name} of {current.name} is missing",
                hint=f"it must sit beside {current.name} in {current.parent}",
            )
        digest = hashlib.sha256((base / archive.MANIFEST).read_bytes()).hexdigest()
        if digest != manifest.base["manifest_sha256"]:
            raise VerificationFailed(
                f"base archive {base.name} of {current.name} was altered "
                "(its manifest does not match the recorded SHA-256)"
            )
        current = base


def effective_files(
    links: list[tuple[Path, ArchiveManifest]],
) -> dict[str, tuple[TableSchema, list[tuple[Path, ArchiveFile]]]]:
    """Per table: its schema and its files in upsert order, after the whole chain."""
    tables: dict[str, tuple[TableSchema, list[tuple[Path, ArchiveFile]]]] = {}
    for path, manifest in links:
        for dropped in manifest.dropped_tables:
            tables.pop(dropped, None)
        for name, table in manifest.tables.items():
            files = [(path / f.path, f) for f in table.files]
            if table.mode == "full" or name not in tables:
                tables[name] = (table.schema.copy(), files)
            else:
                replaced = set(table.replaced_partitions)
                kept = [(p, f) for p, f in tables[name][1] if f.partition not in replaced]
                tables[name] = (table.schema.copy(), kept + files)
    return tables


def _incremental(
    db_dir: Path,
    view: View,
    handles: dict[str, TypingIO[bytes]],
    tables: list[str],
    base_dir: Path,
    manifest: ArchiveManifest,
    writer: _ArchiveWriter,
) -> None:
    # The chain's links are checked (each manifest's SHA-256 as its successor recorded
    # it); the base files' contents are not read: what changed is known from the
    # manifests, and hashing the whole base would cost the whole database each night
    # (checking it is the archive verification's job).
    links = chain(base_dir)
    base_manifest = links[-1][1]
    if base_manifest.database != manifest.database:
        raise InvalidArgument(
            f"base archive {base_dir.name} is of database {base_manifest.database}"
        )
    manifest.base = {
        "name": base_dir.name,
        "snapshot_lsn": base_manifest.snapshot_lsn,
        "manifest_sha256": hashlib.sha256((base_dir / archive.MANIFEST).read_bytes()).hexdigest(),
    }
    base_tables = effective_files(links)
    if manifest.kind == "database":
        manifest.dropped_tables = sorted(set(base_tables) - set(tables))
    for table in tables:
        schema = view.catalog[table]
        base = base_tables.get(table)
        if base is None or not set(base[0].tags) <= set(schema.tags):
            # new, or dropped and made anew with other tags: the table whole
            manifest.tables[table] = _full_table(db_dir, view, handles, table, writer)
        else:
            files = [f for _, f in base[1]]
            manifest.tables[table] = _delta_table(db_dir, view, handles, table, files, writer)


def _delta_table(
    db_dir: Path,
    view: View,
    handles: dict[str, TypingIO[bytes]],
    table: str,
    base_files: list[ArchiveFile],
    writer: _ArchiveWriter,
) -> ArchiveTable:
    """What changed in ``table`` since the base chain, read by partition from the
    segments' digests, not row by row. A segment whose digest a base file has is in the
    base (a backup copies segments byte for byte, a restore installs files as they
    are). A partition whose base files are all still segments, with nothing deleted
    since, gains its new segments and memtable rows as upserts; any other partition
    (compacted, rewritten by a delete, expired) is carried whole and replaces the
    base's. The cost follows the changed partitions, whatever the table's size."""
    precision = view.settings.precision
    now = _TableNow.of(view, table)
    in_base: dict[int, set[str]] = defaultdict(set)
    for item in base_files:
        in_base[item.partition].add(item.sha256)
    result = ArchiveTable(view.catalog[table].copy(), mode="delta")
    for partition in sorted(now.partitions() | set(in_base)):
        infos = now.segments.get(partition, [])
        kept = [i for i in infos if i.sha256 and i.sha256 in in_base[partition]]
        new = [i for i in infos if i not in kept]
        newer = not kept or min((i.seq for i in new), default=1 << 62) > max(i.seq for i in kept)
        if (
            {i.sha256 for i in kept} == in_base[partition]
            and newer
            and not now.touched_by_deletes(infos, precision)
        ):
            if new or partition in now.pending:
                result.files += _partition_files(
                    db_dir, view, handles, table, partition, new, now, writer
                )
            continue
        result.replaced_partitions.append(partition)
        result.files += _partition_files(
            db_dir, view, handles, table, partition, infos, now, writer
        )
    return result


# -- list, verify, prune --------------------------------------------------------------------


def list_archives(location: str) -> list[dict[str, Any]]:
    """The archives of the store ``location``, oldest name first."""
    store = open_store(location)
    archivestore.require_store(store)
    return _archives(store)


def _archives(store: Store) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in archivestore.archive_names(store):
        try:
            m, _ = archivestore.read_manifest(store, name)
        except (VerificationFailed, NotFound) as exc:
            out.append({"name": name, "error": str(exc)})
            continue
        out.append(
            {
                "name": name,
                "kind": m.kind,
                "database": m.database,
                "incremental": m.base is not None,
                "tables": len(m.tables),
                "table_names": sorted(m.tables),
                "rows": m.rows,
                "bytes": m.size,
                "snapshot_lsn": m.snapshot_lsn,
                "created": m.created,
                "base": m.base["name"] if m.base else None,
            }
        )
    return out


@dataclass
class VerifyArchiveReport:
    archive: str
    ok: bool = True
    files: int = 0
    rows: int = 0
    bytes: int = 0
    chain: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verify_archive(location: str) -> VerifyArchiveReport:
    """Manifest, files, sizes, SHA-256, Parquet schema and row counts, and the base chain
    (an archive of a remote store is downloaded first, then checked the same way)."""
    store, name = archivestore.split_location(location)
    with archivestore.fetched(store, name) as archive_dir:
        report = _verify(archive_dir)
    report.archive = archivestore.describe(store, name)
    return report


def _verify(archive_dir: Path) -> VerifyArchiveReport:
    report = VerifyArchiveReport(archive=str(archive_dir))
    try:
        links = chain(archive_dir)
    except (VerificationFailed, InvalidArgument) as exc:
        report.problems.append(str(exc))
        report.ok = False
        return report
    report.chain = [p.name for p, _ in links]
    for path, manifest in links:
        problems = archive.check_tree(path, manifest) + archive.check_contents(path, manifest)
        report.problems += [f"{path.name}: {p}" for p in problems]
    _, own = links[-1]
    report.files = sum(len(t.files) for t in own.tables.values())
    report.rows, report.bytes = own.rows, own.size
    report.ok = not report.problems
    return report


@dataclass
class PruneReport:
    directory: str
    dry_run: bool
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept_as_base: list[str] = field(default_factory=list)
    # why each kept archive is kept: the rules that keep it (one line each)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    # what killed backups left: staging directories of dead processes (local stores),
    # and uploads no manifest commits, older than the grace period
    leftovers_removed: list[str] = field(default_factory=list)
    # what killed commands left on this machine (engine.io.scratch), whatever the store
    scratch_removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def prune(
    location: str,
    *,
    keep_last: int,
    keep_daily: int = 0,
    keep_weekly: int = 0,
    dry_run: bool = False,
    grace_seconds: float = archivestore.GRACE_SECONDS,
) -> PruneReport:
    """Keep the last N, the newest of each of the last D days and W ISO weeks, counted
    per database and kind (whole-database backups apart from each set of tables
    backed up alone), and every base a kept archive's chain needs; delete the rest,
    and what killed backups left behind (uploads no manifest commits, once older than
    ``grace_seconds``). ``reasons`` says why each kept archive stays."""
    if keep_last < 1:
        raise InvalidArgument(
            "keep-last must be at least 1",
            hint="pruning never deletes every archive",
            param="keep_last",
        )
    store = open_store(location)
    archivestore.require_store(store)
    report = PruneReport(store.describe(), dry_run)
    archives = [a for a in _archives(store) if "error" not in a]
    reasons = _retained(archives, keep_last, keep_daily, keep_weekly)
    report.reasons = {name: reasons[name] for name in sorted(reasons)}
    report.kept = sorted(reasons)
    report.kept_as_base = sorted(
        name for name, why in reasons.items() if all(w.startswith("base of ") for w in why)
    )
    report.deleted = sorted(a["name"] for a in archives if a["name"] not in reasons)
    unreferenced = archivestore.unreferenced(store, grace_seconds)
    local = store.local_dir
    if dry_run:
        staged = [p.name for p in dead_staging(local)] if local else []
        report.leftovers_removed = staged + unreferenced
        report.scratch_removed = [str(p) for p in scratch.dead()]
        return report
    report.leftovers_removed = clear_dead_staging(local) if local else []
    report.scratch_removed = scratch.clear_dead()
    for name in unreferenced:
        archivestore.delete_unreferenced(store, name)
    report.leftovers_removed += unreferenced
    for name in report.deleted:
        archivestore.delete_archive(store, name)
    return report


def _series_of(item: dict[str, Any]) -> str:
    """What retention counts an archive among: the backups of one database, whole, or
    of one set of its tables (as pgBackRest counts full backups apart from the rest)."""
    if item["kind"] == "database":
        return f"database backups of {item['database']}"
    return f"backups of table(s) {', '.join(item.get('table_names', []))} of {item['database']}"


def _retained(
    archives: list[dict[str, Any]], keep_last: int, keep_daily: int, keep_weekly: int
) -> dict[str, list[str]]:
    """Every archive to keep, with the rules that keep it: the last N, the newest of each
    of D days and W weeks, counted in each series (:func:`_series_of`), then every base
    a kept archive's chain needs."""
    series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in archives:
        series[_series_of(item)].append(item)
    reasons: dict[str, list[str]] = defaultdict(list)
    for label, items in series.items():
        items.sort(key=lambda a: (a["created"], a["snapshot_lsn"]), reverse=True)
        for item in items[:keep_last]:
            reasons[item["name"]].append(f"one of the last {keep_last} {label}")
        for rule, count, bucket in (
            ("day", keep_daily, lambda d: d.isoformat()),
            ("week", keep_weekly, lambda d: f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}"),
        ):
            for key, name in _newest_per(items, count, bucket).items():
                reasons[name].append(f"the newest of {rule} {key} ({label})")
    bases = {a["name"]: a["base"] for a in archives}
    for name in list(reasons):
        child, base = name, bases.get(name)
        while base:
            reasons[base].append(f"base of {child}")
            child, base = base, bases.get(base)
    return {name: list(dict.fromkeys(why)) for name, why in reasons.items()}


def _newest_per(
    items: list[dict[str, Any]], count: int, bucket: Callable[[date], str]
) -> dict[str, str]:
    kept: dict[str, str] = {}
    for item in items:  # newest first
        key = bucket(datetime.strptime(item["created"][:10], "%Y-%m-%d").date())
        if key not in kept:
            if len(kept) >= count:
                break
            kept[key] = item["name"]
    return kept
