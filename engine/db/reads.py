"""Reading a database: the snapshot a reader holds (:class:`View`), a table's rows out
of it after upserts and pending deletes, a reader's replay while a writer works, and
how many rows of a write would overwrite stored points.

Every function here reads; none takes a database lock. :class:`engine.db.database.Database`
hands them what it holds under its write lock (a view, or its memtables and segments).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.arrowmods import pa, pc
from engine.db.recovery import ReplayState, WalGap, replay
from engine.errors import InvalidArgument, NotFound
from engine.settings import Settings
from engine.storage import deletes, segment
from engine.storage.deletes import DeleteSpec
from engine.storage.manifest import Manifest, SegmentInfo
from engine.storage.memtable import Memtable, time_span
from engine.storage.merge import duplicate_keys, upsert_merge
from engine.storage.rows import prefilter
from engine.storage.schema import TS, TableSchema


@dataclass(frozen=True)
class View:
    """A consistent read snapshot: the manifest plus what the memtables hold."""

    manifest: Manifest
    catalog: dict[str, TableSchema]
    settings: Settings
    memtables: list[Memtable]
    hidden_tables: frozenset[str]
    last_lsn: int
    committed_lsn: int = 0  # the last LSN ending a transaction: what a snapshot holds
    # deletes not yet applied to the segment files: every segment read goes through them
    deletes: tuple[DeleteSpec, ...] = ()


def scan_view(
    db_dir: Path,
    view: View,
    table: str,
    *,
    start: int | None = None,
    end: int | None = None,
    where: dict[str, str] | None = None,
    limit: int | None = None,
) -> pa.Table:
    """Rows of ``table`` in ``view`` after upserts, sorted by tags then ``ts``."""
    schema = view.catalog.get(table)
    if schema is None:
        raise NotFound(f"table {table} does not exist in database {view.manifest.database}")
    for tag in where or {}:
        if tag not in schema.tags:
            raise InvalidArgument(
                f"table {table} has no tag {tag!r}",
                hint=f"tags: {', '.join(schema.tags) or 'none'}",
            )
    batches = []
    entry = view.manifest.tables.get(table)
    precision = view.settings.precision
    removing = deletes.pending_for(view.deletes, table)

    def keep(rows: pa.Table) -> pa.Table:
        rows = deletes.without_deleted(rows, table, removing, precision)
        return prefilter(rows, start, end, where)

    if entry is not None and table not in view.hidden_tables:
        for info in sorted(entry.segments, key=lambda s: s.seq):
            if (end is not None and info.min_ts >= end) or (
                start is not None and info.max_ts < start
            ):
                continue
            if limit is None:
                batches.append(keep(segment.read(db_dir, info)))
            else:  # only as many rows of each segment as the merged result can need
                batches.append(segment.read_head(db_dir, info, limit, keep, schema.tags))
    for memtable in view.memtables:
        batches += [prefilter(b, start, end, where) for b in memtable.batches.get(table, [])]
    merged = upsert_merge(batches, schema, view.settings.precision)
    return merged.slice(0, limit) if limit is not None else merged


def replay_consistently(db_dir: Path, name: str, attempts: int = 50) -> ReplayState:
    """Replay for a reader while a writer may be rotating the WAL or removing files.

    A checkpoint that lands between our reading the manifest and the WAL shows
    as a gap (:class:`WalGap`) or a vanished file: read again.
    """
    for _ in range(attempts - 1):
        try:
            return replay(db_dir, name, repair=False)
        except (WalGap, FileNotFoundError):
            time.sleep(0.02)
    return replay(db_dir, name, repair=False)


def count_overwrites(
    db_dir: Path,
    table: str,
    rows: pa.Table,
    tags: list[str],
    memtables: Iterable[Memtable],
    stored: Iterable[SegmentInfo],
    pending_deletes: Iterable[DeleteSpec],
    precision: str,
) -> int:
    """How many of ``rows`` overwrite a point: one in ``stored`` segments (less what
    ``pending_deletes`` remove), one in ``memtables``, or one earlier in ``rows``. Only
    what shares their time span is looked at, so appending new data costs a sort of
    the batch's keys and no read."""
    among_themselves = duplicate_keys(rows, tags)
    low, high = time_span(rows)
    older = [b for memtable in memtables for b in memtable.overlapping(table, low, high)]
    for info in stored:
        if info.min_ts <= high and low <= info.max_ts:
            kept = deletes.without_deleted(
                segment.read(db_dir, info), table, pending_deletes, precision
            )
            older.append(kept)
    if not older:
        return among_themselves
    before = pa.concat_tables(
        [_keys_within(o, tags, low, high) for o in older], promote_options="default"
    )
    if not before.num_rows:
        return among_themselves
    first, last = time_span(before)
    mine = _keys_within(rows, tags, first, last)  # the only rows that can meet older ones
    both = pa.concat_tables([before, mine], promote_options="default")
    met = duplicate_keys(both, tags) - duplicate_keys(before, tags)
    return among_themselves + met - duplicate_keys(mine, tags)


def _keys_within(rows: pa.Table, tags: list[str], low: int, high: int) -> pa.Table:
    """The key columns of the rows of ``rows`` whose timestamp is in ``[low, high]``."""
    ts = rows.column(TS).cast(pa.int64())
    keys = rows.select([c for c in [TS, *tags] if c in rows.column_names])
    return keys.filter(pc.and_(pc.greater_equal(ts, low), pc.less_equal(ts, high)))
