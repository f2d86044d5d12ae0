"""Checkpoint and compaction plans: write the segments, compute the next manifest.

Both run under the database's checkpoint lock and leave installing the
manifest to the caller (``engine/db/database.py``), which then deletes the files
the plan made obsolete. A failure while writing removes what the plan wrote;
a crash leaves unlisted segments, removed at the next open. The manifest is
the commit point of both.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import names
from engine.arrowmods import pa
from engine.io.fileio import IO
from engine.settings import Settings
from engine.storage import mergescan, segment
from engine.storage.deletes import DeleteSpec, pending_for, without_deleted
from engine.storage.manifest import Manifest, SegmentInfo, TableEntry
from engine.storage.memtable import Memtable
from engine.storage.merge import upsert_merged
from engine.storage.schema import TableSchema


@dataclass
class CheckpointReport:
    database: str
    reason: str
    skipped: bool = False
    lsn: int = 0
    rows: int = 0
    tables: int = 0
    segments_written: int = 0
    bytes_written: int = 0
    wal_rotated: bool = False
    wal_bytes_removed: int = 0
    # deletes and expiry applied to the segment files
    rows_deleted: int = 0
    segments_rewritten: int = 0
    segments_dropped: int = 0
    # the retention's expiry at this checkpoint: rows as stored, partitions emptied
    rows_expired: int = 0
    partitions_expired: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CompactionReport:
    database: str
    partitions: int = 0
    segments_before: int = 0
    segments_after: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    rows: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckpointInput:
    """What a checkpoint writes, taken under the write lock at the WAL rotation."""

    catalog: dict[str, TableSchema]
    hidden: set[str]  # tables dropped since the last checkpoint
    settings: Settings
    pending: list[Memtable]
    deletes: list[DeleteSpec]  # logged since the last checkpoint, up to its LSN


@dataclass
class CheckpointPlan:
    manifest: Manifest
    written: list[SegmentInfo] = field(default_factory=list)
    obsolete_files: list[str] = field(default_factory=list)
    rows: int = 0
    rows_deleted: int = 0
    rewritten: int = 0
    dropped: int = 0

    def report(
        self, database: str, reason: str, rotated: bool, wal_removed: int, seconds: float
    ) -> CheckpointReport:
        return CheckpointReport(
            database=database,
            reason=reason,
            lsn=self.manifest.checkpoint_lsn,
            rows=self.rows,
            tables=len({s.file.split("/")[1] for s in self.written}),
            segments_written=len(self.written),
            bytes_written=sum(s.bytes for s in self.written),
            wal_rotated=rotated,
            wal_bytes_removed=wal_removed,
            rows_deleted=self.rows_deleted,
            segments_rewritten=self.rewritten,
            segments_dropped=self.dropped,
            seconds=seconds,
        )


def plan_checkpoint(
    db_dir: Path, old: Manifest, given: CheckpointInput, lsn: int, next_txn: int
) -> CheckpointPlan:
    """Write the pending memtables as segments, rewrite the segments the deletes touch;
    the manifest that would list the result."""
    catalog, hidden, settings, pending = given.catalog, given.hidden, given.settings, given.pending
    manifest = Manifest(
        database=old.database,
        settings=settings,
        checkpoint_lsn=lsn,
        next_txn=next_txn,
        next_segment=old.next_segment,
        uuid=old.uuid,
        epoch=old.epoch,
    )
    plan = CheckpointPlan(manifest)
    try:
        for name, schema in catalog.items():
            previous = old.tables.get(name)
            keep = [] if previous is None or name in hidden else list(previous.segments)
            removing = pending_for(given.deletes, name)
            if removing and keep:
                keep = _without_deleted(
                    db_dir, plan, name, schema.tags, keep, removing, settings.precision
                )
            batches = [b for memtable in pending for b in memtable.batches.get(name, [])]
            if batches:
                keep += _write_table(db_dir, plan, name, schema, batches, settings)
            manifest.tables[name] = TableEntry(schema.copy(), keep)
    except BaseException:
        IO.remove_many(db_dir / s.file for s in plan.written)
        raise
    for name, entry in old.tables.items():
        if name not in catalog or name in hidden:
            plan.obsolete_files += [s.file for s in entry.segments]
    return plan


def _without_deleted(
    db_dir: Path,
    plan: CheckpointPlan,
    table: str,
    tags: list[str],
    infos: list[SegmentInfo],
    removing: list[DeleteSpec],
    precision: str,
) -> list[SegmentInfo]:
    """``infos`` after the deletes: a segment a delete covers whole is dropped unread, one
    holding matching rows is rewritten without them (same ``seq``: its place in the
    upsert order), the others are kept as they are."""
    kept: list[SegmentInfo] = []
    for info in infos:
        touching = [d for d in removing if d.touches(info, precision)]
        if not touching:
            kept.append(info)
            continue
        encoder = None
        if not any(d.covers(info, precision) for d in touching):
            encoder = _rewritten(db_dir, info, table, tags, touching, precision)
            if encoder.rows == info.rows:
                kept.append(info)
                continue
        plan.obsolete_files.append(info.file)
        plan.rows_deleted += info.rows - (encoder.rows if encoder is not None else 0)
        if encoder is None or not encoder.rows:
            plan.dropped += 1
            continue
        file_id = plan.manifest.next_segment
        plan.manifest.next_segment += 1
        path = names.segment_path(table, info.partition, file_id)
        rewritten = segment.write_encoded(db_dir, path, info.partition, info.seq, encoder)
        plan.written.append(rewritten)
        plan.rewritten += 1
        kept.append(rewritten)
    return kept


def _rewritten(
    db_dir: Path,
    info: SegmentInfo,
    table: str,
    tags: list[str],
    touching: list[DeleteSpec],
    precision: str,
) -> segment.Encoder:
    """The segment's rows less what ``touching`` removes, encoded a batch at a time."""
    encoder: segment.Encoder | None = None
    for batch in segment.batches(db_dir, info, REWRITE_ROWS):
        if encoder is None:
            encoder = segment.Encoder(batch.schema, tags)
        encoder.add(without_deleted(batch, table, touching, precision))
    if encoder is None:
        raise segment.damaged(db_dir / info.file, "it holds no rows")
    return encoder


# Sorted rows a checkpoint gathers and encodes at a time (whole row groups).
PIECE_ROWS = 8 * segment.ROW_GROUP_ROWS


def _write_table(
    db_dir: Path,
    plan: CheckpointPlan,
    table: str,
    schema: TableSchema,
    batches: list[pa.Table],
    settings: Settings,
) -> list[SegmentInfo]:
    """A segment per time partition of ``batches`` (oldest first), upserts applied.

    The batches are split by partition first (a batch usually lies in one: kept as it
    is) and each partition merged and encoded before the next, a piece of sorted rows
    at a time, so the memory beside the memtable is the sort's order, a piece and the
    compressed file: neither all the sorted rows nor their split by partition."""
    parts: dict[int, list[pa.Table]] = {}
    for batch in batches:
        for partition, rows in segment.split_by_partition(batch, settings.partition_units).items():
            parts.setdefault(partition, []).append(rows)
    infos = []
    for partition in sorted(parts):
        encoder = segment.Encoder(schema.arrow_schema(settings.precision), schema.tags)
        merged = upsert_merged(parts.pop(partition), schema, settings.precision, PIECE_ROWS)
        for piece in merged:
            encoder.add(piece)
        file_id = plan.manifest.next_segment
        plan.manifest.next_segment += 1
        path = names.segment_path(table, partition, file_id)
        info = segment.write_encoded(db_dir, path, partition, file_id, encoder)
        plan.written.append(info)
        plan.rows += info.rows
        infos.append(info)
    return infos


@dataclass
class CompactionPlan:
    manifest: Manifest
    merged: list[tuple[str, int]] = field(default_factory=list)
    inputs: list[SegmentInfo] = field(default_factory=list)
    written: list[SegmentInfo] = field(default_factory=list)

    @property
    def obsolete_files(self) -> list[str]:
        return [s.file for s in self.inputs]

    def report(self, database: str, seconds: float) -> CompactionReport:
        return CompactionReport(
            database=database,
            partitions=len(self.merged),
            segments_before=len(self.inputs),
            segments_after=len(self.written),
            bytes_before=sum(s.bytes for s in self.inputs),
            bytes_after=sum(s.bytes for s in self.written),
            rows=sum(s.rows for s in self.written),
            seconds=seconds,
        )


# A merged segment holds at most this many rows, so compaction's memory stays bounded
# (the merge happens in memory) however large a partition grows.
COMPACT_TARGET_ROWS = 200_000
# Rows per batch when a segment is rewritten or segments merged: the memory of both.
REWRITE_ROWS = 65_536


def small_segments(infos: list[SegmentInfo]) -> int:
    """Segments worth merging: under half the target size."""
    return sum(1 for s in infos if s.rows < COMPACT_TARGET_ROWS // 2)


def merge_runs(infos: list[SegmentInfo]) -> list[list[SegmentInfo]]:
    """Consecutive (in ``seq`` order) groups of segments of at most the target rows.

    Only neighbours in ``seq`` order are merged: the merged segment takes the newest
    input's ``seq``, so the upsert order against every other segment stays the same.
    """
    runs: list[list[SegmentInfo]] = []
    current: list[SegmentInfo] = []
    rows = 0
    for info in sorted(infos, key=lambda s: s.seq):
        if current and rows + info.rows > COMPACT_TARGET_ROWS:
            runs.append(current)
            current, rows = [], 0
        current.append(info)
        rows += info.rows
    if current:
        runs.append(current)
    return runs


def plan_compaction(db_dir: Path, old: Manifest, min_segments: int) -> CompactionPlan:
    """In each partition with at least ``min_segments`` small segments, merge neighbouring
    segments into segments of up to :data:`COMPACT_TARGET_ROWS` rows."""
    manifest = Manifest(
        database=old.database,
        settings=old.settings,
        checkpoint_lsn=old.checkpoint_lsn,
        next_txn=old.next_txn,
        next_segment=old.next_segment,
        uuid=old.uuid,
        epoch=old.epoch,
    )
    plan = CompactionPlan(manifest)
    try:
        for name, entry in old.tables.items():
            manifest.tables[name] = TableEntry(
                entry.schema.copy(), _compact_table(db_dir, plan, name, entry, min_segments)
            )
    except BaseException:
        IO.remove_many(db_dir / s.file for s in plan.written)
        raise
    return plan


def _compact_table(
    db_dir: Path, plan: CompactionPlan, table: str, entry: TableEntry, min_segments: int
) -> list[SegmentInfo]:
    by_partition: dict[int, list[SegmentInfo]] = defaultdict(list)
    for info in entry.segments:
        by_partition[info.partition].append(info)
    kept: list[SegmentInfo] = []
    precision = plan.manifest.settings.precision
    for partition, infos in sorted(by_partition.items()):
        if small_segments(infos) < min_segments:
            kept += infos
            continue
        merged_any = False
        for run in merge_runs(infos):
            if len(run) < 2:
                kept += run
                continue
            merged_any = True
            encoder = segment.Encoder(entry.schema.arrow_schema(precision), entry.schema.tags)
            for batch in mergescan.merged(
                [
                    (segment.batches(db_dir, s, REWRITE_ROWS), segment.unsorted(db_dir / s.file))
                    for s in run
                ],
                entry.schema,
                precision,
                REWRITE_ROWS,
            ):
                encoder.add(batch)
            file_id = plan.manifest.next_segment
            plan.manifest.next_segment += 1
            # The merged segment takes the newest input's seq: later segments still win over it.
            path = names.segment_path(table, partition, file_id)
            merged = segment.write_encoded(db_dir, path, partition, run[-1].seq, encoder)
            plan.written.append(merged)
            plan.inputs += run
            kept.append(merged)
        if merged_any:
            plan.merged.append((table, partition))
    return kept
