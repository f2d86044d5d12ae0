"""Restore: an archive (and its base chain) back into a database.

Every checksum of the whole chain is verified before anything is touched.
Archive files are valid segments, so a restore copies them in chain order and
lists them in a manifest: later files win in the upsert merge exactly as the
chain says. A whole database is built beside the target under a hidden name
and renamed into place (``replace`` moves the old one aside first, and a
restore killed between those two renames is undone by the next command that
writes to the data dir: ``engine.db.datadir.clear_leftovers``). Tables
restored into an existing database are copied in first and committed by one
atomic manifest install. Either way a failed or killed restore leaves the
target as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.archive import format as archive
from engine.archive import store as archivestore
from engine.archive.backup import chain, effective_files
from engine.archive.format import ArchiveFile, ArchiveManifest
from engine.db.database import Database
from engine.db.datadir import (
    clear_leftovers,
    database_dir,
    ensure_data_dir,
    require_data_dir,
    swap_in,
)
from engine.errors import AlreadyExists, InvalidArgument, NotFound
from engine.io.fileio import IO
from engine.log import wal
from engine.names import segment_path, validate_name
from engine.settings import Settings
from engine.storage import manifest as manifest_format
from engine.storage import segment
from engine.storage.manifest import Manifest, SegmentInfo, TableEntry
from engine.storage.schema import TableSchema

MODES = ("fail", "replace", "merge")


@dataclass
class RestoreOptions:
    archive: str  # a path, file:///path/NAME or s3://bucket/prefix/NAME
    db: str | None = None
    tables: list[str] | None = None
    mode: str = "fail"
    dry_run: bool = False  # verify and say what would be restored; change nothing

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidArgument(
                f"invalid restore mode {self.mode!r}",
                hint="use fail, replace or merge",
                param="mode",
            )


@dataclass
class RestoreReport:
    database: str
    archive: str
    chain: list[str]
    tables: list[str]
    rows: int
    files: int
    bytes: int
    mode: str
    seconds: float
    notes: list[str]
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Files = dict[str, tuple[TableSchema, list[tuple[Path, ArchiveFile]]]]


def restore(data_dir: Path, options: RestoreOptions) -> RestoreReport:
    """Restore an archive of any store: a remote one is downloaded first (with its base
    chain), then everything is verified before the target is touched."""
    store, name = archivestore.split_location(options.archive)
    with archivestore.fetched(store, name) as archive_dir:
        report = _restore(data_dir, archive_dir, options)
    report.archive = archivestore.describe(store, name)
    return report


def _restore(data_dir: Path, archive_dir: Path, options: RestoreOptions) -> RestoreReport:
    started = time.perf_counter()
    links = chain(archive_dir)
    for path, link in links:
        archive.require_tree_sound(path, link)
    # the files' contents are checked while a whole restore copies them beside the
    # target: nothing is swapped in before the check passed (a failed check wins over
    # any other refusal, as if it had run first)
    with ThreadPoolExecutor(1) as pool:
        checked = pool.submit(_check_contents, links)
        try:
            tables, target, whole = _plan(data_dir, archive_dir, options, links)
            if options.dry_run or not whole:
                checked.result()
            if options.dry_run:
                pass  # verified and checked: the report says what would be restored
            elif whole:
                own = links[-1][1]
                _restore_database(data_dir, target, own.settings, tables, checked.result)
            else:
                with Database.open(database_dir(data_dir, target), target, background=False) as db:
                    db.restore_tables(
                        {
                            t: (s, [(p, _segment_of(f)) for p, f in fs])
                            for t, (s, fs) in tables.items()
                        },
                        options.mode,
                    )
        except BaseException:
            checked.result()  # a damaged archive is what to report
            raise
    own = links[-1][1]
    files = [f for _, fs in tables.values() for _, f in fs]
    return RestoreReport(
        database=target,
        archive=str(archive_dir),
        chain=[p.name for p, _ in links],
        tables=sorted(tables),
        rows=sum(f.rows for f in files),
        files=len(files),
        bytes=sum(f.bytes for f in files),
        mode=options.mode,
        seconds=time.perf_counter() - started,
        notes=list(own.notes),
        dry_run=options.dry_run,
    )


def _check_contents(links: list[tuple[Path, ArchiveManifest]]) -> None:
    for path, link in links:
        archive.require_files_sound(path, link)


def _plan(
    data_dir: Path,
    archive_dir: Path,
    options: RestoreOptions,
    links: list[tuple[Path, ArchiveManifest]],
) -> tuple[Files, str, bool]:
    """(the files to restore per table, the target database, whether it is restored
    whole) once every refusal that does not depend on the files' contents is made."""
    own = links[-1][1]
    target = validate_name("database", options.db or own.database)
    tables = effective_files(links)
    if options.tables is not None:
        missing = [t for t in options.tables if t not in tables]
        if missing:
            raise NotFound(f"archive {archive_dir.name} has no table {', '.join(missing)}")
        tables = {t: tables[t] for t in sorted(set(options.tables))}
    if options.tables is not None:
        base = require_data_dir(data_dir)  # tables go into a database that exists
    else:  # a whole database is made here (a dry run only says it would be)
        base = data_dir if options.dry_run else ensure_data_dir(data_dir)
    target_dir = database_dir(base, target)
    exists = (target_dir / manifest_format.FILENAME).exists()
    if options.tables is None and exists and options.mode == "fail":
        raise AlreadyExists(
            f"database {target} exists",
            hint="restore in mode replace or merge, or under a new name",
        )
    whole = options.tables is None and (not exists or options.mode == "replace")
    if not whole:
        if not exists:
            raise NotFound(
                f"database {target} does not exist to restore tables into",
                hint="restore the whole archive, or create the database first",
            )
        current = Database.open(target_dir, target, readonly=True).settings
        _require_same_layout(own.settings, current, archive_dir.name, target)
    return tables, target, whole


def _require_same_layout(archived: Settings, target: Settings, archive: str, db: str) -> None:
    """Archive files become segments as they are: their timestamps' precision and their
    partitions must be the target's, or the target would later fail or misfile them."""
    for key, ours, theirs in (
        ("precision", archived.precision, target.precision),
        ("partition", archived.to_json()["partition"], target.to_json()["partition"]),
    ):
        if ours != theirs:
            raise InvalidArgument(
                f"archive {archive} has {key} {ours}, database {db} has {theirs}; "
                "nothing was changed",
                hint="restore the whole archive into a new database (another name)",
            )


def _segment_of(info: ArchiveFile) -> SegmentInfo:
    return SegmentInfo(
        file=info.path,
        partition=info.partition,
        seq=0,
        rows=info.rows,
        bytes=info.bytes,
        min_ts=info.min_ts,
        max_ts=info.max_ts,
        sha256=info.sha256,
    )


def _restore_database(
    data_dir: Path,
    name: str,
    settings: Settings,
    tables: Files,
    before_swap: Callable[[], object] | None = None,
) -> None:
    # a restored copy is a database of its own: a new identity, and none of the
    # original's replica stores (they replicate the original)
    uuid, epoch = manifest_format.new_identity()
    build_database(
        data_dir,
        name,
        settings.detached(),
        tables,
        uuid=uuid,
        epoch=epoch,
        before_swap=before_swap,
    )


def build_database(
    data_dir: Path,
    name: str,
    settings: Settings,
    tables: Files,
    *,
    uuid: str,
    epoch: int,
    lsn: int | None = None,
    extra: dict[str, bytes] | None = None,
    before_swap: Callable[[], object] | None = None,
) -> None:
    """Build database ``name`` from archive files beside the data dir, then swap it in.

    ``lsn`` (a standby seeded from a snapshot): the manifest's checkpoint LSN is the
    snapshot's, the WAL starts right after it and holds nothing, so the primary's
    records apply with their own LSNs. Without it the WAL starts with a settings
    record. ``extra``: further files of the database directory (``standby.json``)."""
    clear_leftovers(data_dir)
    staging = data_dir / f".{name}.restoring.{os.getpid()}"
    IO.remove_tree(staging)
    IO.mkdirs(staging / wal.WAL_DIR)
    try:
        manifest = Manifest(
            database=name,
            settings=settings,
            checkpoint_lsn=1 if lsn is None else lsn,
            uuid=uuid,
            epoch=epoch,
        )
        copies: list[tuple[Path, Path]] = []
        for table, (schema, files) in tables.items():
            entry = TableEntry(schema.copy())
            for source, info in files:
                file_id = manifest.next_segment
                manifest.next_segment += 1
                rel = segment_path(table, info.partition, file_id)
                copies.append((source, staging / rel))
                entry.segments.append(
                    SegmentInfo(
                        rel,
                        info.partition,
                        file_id,
                        info.rows,
                        info.bytes,
                        info.min_ts,
                        info.max_ts,
                        info.sha256,
                        footer=segment.footer_digest_of(source),
                    )
                )
            manifest.tables[table] = entry
        IO.copy_files(copies, "restore.write")
        start = 1 if lsn is None else lsn + 1
        writer = wal.WalWriter(
            staging / wal.WAL_DIR / wal.CURRENT, name, start, create=True, uuid=uuid, epoch=epoch
        )
        if lsn is None:
            change = {"op": "settings", "settings": settings.to_json()}
            writer.append(wal.encode_record(1, 0, wal.RecordType.DDL, wal.encode_ddl(change)))
            writer.fsync()
        writer.close()
        for rel_name, data in (extra or {}).items():
            IO.write_file_atomic(staging / rel_name, data, "restore.write")
        manifest_format.install(staging, manifest)
        if before_swap is not None:
            before_swap()  # raises if what was copied may not be swapped in
        IO.crash_point("restore.before_swap")
        swap_in(data_dir, name, staging)
    except BaseException:
        IO.remove_tree(staging)
        raise
