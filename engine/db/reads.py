"""Reading a database: the snapshot a reader holds (:class:`View`), a table's rows out
of it after upserts and pending deletes, a reader's replay while a writer works, and
how many rows of a write would overwrite stored points.

Every function here reads; none takes a database lock. :class:`engine.db.database.Database`
hands them what it holds under its write lock (a view, or its memtables and segments).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from engine.arrowmods import pa, pc
from engine.db.recovery import ReplayState, WalGap, replay
from engine.db.scansources import (
    FewRows,
    Leading,
    Source,
    first_rows,
    grouped,
    never_unsorted,
    removed_after,
    spilled_runs,
)
from engine.errors import InvalidArgument, NotFound
from engine.io import scratch
from engine.io.fileio import IO
from engine.settings import Settings
from engine.storage import deletes, mergescan, segment
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


# Rows per batch a scan yields, and the rows all of a scan's sources may hold decoded
# at once (split among them: many segments, smaller batches from each).
SCAN_BATCH_ROWS = 65_536
SCAN_BUDGET_ROWS = 262_144
MIN_SOURCE_ROWS = 1_024
# Rows within bounds a bounded scan sorts in memory rather than merges (its sort holds
# a few copies of them, the merge a batch per source): one host over every partition.
FEW_ROWS = 16_384
# Segments a merge reads side by side; a table with more is merged in groups that are
# spilled to scratch first (engine.storage.spill). Each open segment costs its reader's
# buffers and decompression contexts (3 to 6 MB, measured) besides its share of the
# budget, so this bound, not the number of partitions, sets the memory.
MAX_OPEN_SEGMENTS = 16
# A scan limited to at most a source's minimum rows spills runs of at most that many
# rows, which stay in memory (engine.storage.spill): many small groups then cost no
# more than a few large ones, so fewer segments are open at once.
LIMITED_OPEN_SEGMENTS = 4


class ScanBounds(TypedDict, total=False):
    """What a scan may be limited to (``[start, end)``, tag values, a number of rows),
    and the most rows it yields at a time."""

    start: int | None
    end: int | None
    where: dict[str, str] | None
    limit: int | None
    batch_rows: int
    held: Callable[[int], object]  # told the rows held decoded at each merge round
    keys_only: bool  # only ``ts`` and the tags: what counting rows needs


def scan_batches(
    db_dir: Path,
    view: View,
    table: str,
    *,
    start: int | None = None,
    end: int | None = None,
    where: dict[str, str] | None = None,
    limit: int | None = None,
    batch_rows: int = SCAN_BATCH_ROWS,
    held: Callable[[int], object] | None = None,
    keys_only: bool = False,
) -> Iterator[pa.Table]:
    """Rows of ``table`` in ``view`` after upserts and pending deletes, sorted by tags
    then ``ts``, ``[start, end)``, in batches of at most ``batch_rows`` rows: a merged
    scan (:mod:`engine.storage.mergescan`) whose memory does not grow with the table.

    The table is checked and every segment opened and verified before this returns,
    so a missing table or file raises here, not in the middle of the rows.

    ``keys_only``: the rows carry ``ts`` and the tags only, and no field is decoded
    (counting rows after upserts needs no more)."""
    schema = view.catalog.get(table)
    if schema is None:
        raise NotFound(f"table {table} does not exist in database {view.manifest.database}")
    if keys_only:
        schema = TableSchema(list(schema.tags), {})
    for tag in where or {}:
        if tag not in schema.tags:
            raise InvalidArgument(
                f"table {table} has no tag {tag!r}",
                hint=f"tags: {', '.join(schema.tags) or 'none'}",
            )
    precision = view.settings.precision
    removing = deletes.pending_for(view.deletes, table)

    def keep(rows: pa.Table) -> pa.Table:  # a segment's rows: already within the bounds
        return deletes.without_deleted(rows, table, removing, precision)

    stored = _segments_between(view, table, start, end)
    small_limit = limit is not None and limit <= MIN_SOURCE_ROWS
    at_once = LIMITED_OPEN_SEGMENTS if small_limit else MAX_OPEN_SEGMENTS
    per_source = SCAN_BUDGET_ROWS // max(1, min(len(stored), at_once))
    per_source = max(
        min(MIN_SOURCE_ROWS, batch_rows), min(batch_rows, per_source, limit or batch_rows)
    )

    bounds: segment.Bounds = {"start": start, "end": end, "where": where}
    columns = schema.column_names() if keys_only else None
    partial = limit is not None  # it may stop early: no whole-file digest

    def read(info: SegmentInfo, *, dictionaries: bool = False) -> Iterator[pa.Table]:
        return segment.batches(
            db_dir,
            info,
            per_source,
            partial=partial,
            columns=columns,
            dictionaries=dictionaries,
            **bounds,
        )

    def disorder(info: SegmentInfo) -> Callable[[], Exception]:
        return segment.unsorted(db_dir / info.file)

    def opened(infos: list[SegmentInfo]) -> list[Source]:
        return [(map(keep, read(info)), disorder(info)) for info in infos]

    if small_limit and limit and len(stored) > LIMITED_OPEN_SEGMENTS:  # limit 0 reads none
        leading = Leading(db_dir, schema, precision, limit, read, keep)
        stored = leading.segments(stored)

    sources: list[Source] = []
    if (start is not None or end is not None or where) and limit is None:
        few = FewRows(read, keep, schema, precision, disorder, FEW_ROWS)
        sources, stored = few.sorted_while_few(stored, held)
    spilled: Path | None = None
    if len(stored) <= at_once:
        sources += opened(stored)
    else:  # merged in groups into runs first, so that at most a group is open at once
        spilled, groups = scratch.make("spill"), grouped(stored, at_once)
        try:
            sources += spilled_runs(
                spilled,
                map(opened, groups),
                schema,
                precision,
                per_source,
                _run_rows(len(groups), batch_rows),
                limit,
                held,
            )
        except BaseException:
            IO.remove_tree(spilled)
            raise
    fresh = [
        _selected(prefilter(b, start, end, where), columns)
        for m in view.memtables
        for b in m.batches.get(table, [])
    ]
    if fresh:  # the newest source: the memtables, merged (they are bounded by the checkpoint)
        sources.append((iter([upsert_merge(fresh, schema, precision)]), never_unsorted))
    rows = mergescan.merged(sources, schema, precision, batch_rows, held)
    empty = schema.arrow_schema(precision).empty_table()
    out = _at_least_one(rows if limit is None else first_rows(rows, limit), empty)
    return out if spilled is None else removed_after(spilled, out)


def _run_rows(runs: int, batch_rows: int) -> int:
    """Rows per batch of each spilled run: the last merge holds a batch of each, and
    together they are the scan's budget."""
    return max(min(MIN_SOURCE_ROWS, batch_rows), min(batch_rows, SCAN_BUDGET_ROWS // runs))


def _selected(rows: pa.Table, columns: list[str] | None) -> pa.Table:
    """``rows`` with only those of ``columns`` it has (all of them for None)."""
    return rows if columns is None else rows.select([c for c in columns if c in rows.column_names])


@dataclass
class Tally:
    """What a pass over a table's rows in scan order counts."""

    rows: int = 0
    series: int = 0
    min_ts: int | None = None
    max_ts: int | None = None


def tally_sorted(batches: Iterable[pa.Table], tags: list[str]) -> Tally:
    """Rows, series and time range of ``batches`` in scan order (series, then time): a
    series starts wherever a row's tags differ from the row before, so one pass with
    one batch held counts them."""
    tally, previous = Tally(), None
    for batch in batches:
        if not batch.num_rows:
            continue
        tally.rows += batch.num_rows
        span = pc.min_max(batch.column(TS).cast(pa.int64())).as_py()
        low, high = span["min"], span["max"]
        tally.min_ts = low if tally.min_ts is None else min(tally.min_ts, low)
        tally.max_ts = high if tally.max_ts is None else max(tally.max_ts, high)
        starts = mergescan.series_starts(batch, tags)
        first, last = mergescan.series_at(batch, [0, batch.num_rows - 1], tags)
        tally.series += len(starts) - (first == previous)
        previous = last
    return tally


def as_table(batches: Iterable[pa.Table], schema: pa.Schema) -> pa.Table:
    """``batches`` (of ``schema``) as one table."""
    held = list(batches)
    return pa.concat_tables(held) if held else schema.empty_table()


def _segments_between(
    view: View, table: str, start: int | None, end: int | None
) -> list[SegmentInfo]:
    """The table's segments, oldest first, that may hold a row in ``[start, end)``."""
    entry = view.manifest.tables.get(table)
    if entry is None or table in view.hidden_tables:
        return []
    return [
        info
        for info in sorted(entry.segments, key=lambda s: s.seq)
        if not (end is not None and info.min_ts >= end)
        and not (start is not None and info.max_ts < start)
    ]


def _at_least_one(batches: Iterator[pa.Table], empty: pa.Table) -> Iterator[pa.Table]:
    """``batches``, or ``empty`` when there are none: a consumer always gets a batch
    that carries the columns (a CSV's header)."""
    gave = False
    for batch in batches:
        gave = True
        yield batch
    if not gave:
        yield empty


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
