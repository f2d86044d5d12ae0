"""Segments put into, or taken out of, an open database in one manifest install: tables
restored from an archive, and damaged segments dropped."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from engine import names
from engine.db.checkpointing import Checkpoints
from engine.db.core import Core, copy_manifest
from engine.errors import AlreadyExists
from engine.io.fileio import IO
from engine.names import validate_name
from engine.storage import manifest as manifest_format
from engine.storage.manifest import Manifest, SegmentInfo, TableEntry
from engine.storage.schema import TableSchema

Restored = dict[str, tuple[TableSchema, list[tuple[Path, SegmentInfo]]]]


def restore_tables(core: Core, checkpoints: Checkpoints, items: Restored, mode: str) -> None:
    """Put restored tables in: ``replace`` swaps each table, ``merge`` upserts onto it,
    ``fail`` refuses tables that exist. One atomic manifest install commits it all."""
    core.check_writable()
    for table, (schema, _files) in items.items():
        validate_name("table", table)
        existing = core.catalog.get(table)
        if existing is not None and mode == "fail":
            raise AlreadyExists(
                f"table {table} exists in database {core.name}",
                hint="restore it in mode replace or merge",
            )
        if existing is not None and mode == "merge":
            existing.grown_by(table, schema.tags, schema.fields)  # a type conflict stops here
    checkpoints.checkpoint("restore")  # what was committed is in segments: the WAL holds no more
    with core.ckpt_lock:
        manifest = copy_manifest(core.manifest)
        copied: list[Path] = []
        obsolete: list[str] = []
        try:
            for table, (schema, files) in items.items():
                segments = []
                for source, info in files:
                    file_id = manifest.next_segment
                    manifest.next_segment += 1
                    rel = names.segment_path(table, info.partition, file_id)
                    IO.copy_file(source, core.dir / rel, "restore.write")
                    copied.append(core.dir / rel)
                    segments.append(replace(info, file=rel, seq=file_id))
                manifest.tables[table] = _restored_entry(
                    manifest, table, schema, segments, mode, obsolete
                )
            IO.crash_point("restore.after_copy")
            with core.write_lock:
                manifest.checkpoint_lsn = core.last_lsn
                manifest_format.install(core.dir, manifest)
                core.manifest = manifest
                for table in items:
                    core.catalog[table] = manifest.tables[table].schema.copy()
        except BaseException:
            IO.remove_many(copied)
            raise
        IO.crash_point("restore.after_manifest")
        IO.remove_many(core.dir / f for f in obsolete)


def _restored_entry(
    manifest: Manifest,
    table: str,
    schema: TableSchema,
    segments: list[SegmentInfo],
    mode: str,
    obsolete: list[str],
) -> TableEntry:
    old = manifest.tables.get(table)
    if old is None or mode != "merge":
        if old is not None:
            obsolete += [s.file for s in old.segments]
        return TableEntry(schema.copy(), segments)
    grown = old.schema.grown_by(table, schema.tags, schema.fields) or old.schema
    return TableEntry(grown.copy(), [*old.segments, *segments])


def drop_segments(core: Core, files: set[str]) -> list[SegmentInfo]:
    """Remove the listed segment files (damaged ones a verify found): one atomic manifest
    install, then the files go. Returns what was dropped; their rows are lost unless
    another segment holds the same keys."""
    core.check_writable()
    with core.ckpt_lock:
        manifest = copy_manifest(core.manifest)
        dropped = []
        for entry in manifest.tables.values():
            dropped += [s for s in entry.segments if s.file in files]
            entry.segments = [s for s in entry.segments if s.file not in files]
        if not dropped:
            return []
        with core.write_lock:
            manifest_format.install(core.dir, manifest)
            core.manifest = manifest
        IO.remove_many(core.dir / s.file for s in dropped)
    return dropped
