"""Whether segments share a key, read from where their time ranges overlap.

Two segments of a table can hold the same key (tags and ``ts``) only at a
timestamp both ranges cover. A checkpoint can fire part-way through the rows of
one timestamp (thousands of hosts reporting at the same instant), so segments
written one after another often meet at one instant and hold different series
there: their merge is still their union. Reading only the rows of each overlap
(a time-bounded read) tells that at the cost of the overlap, not of the files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from engine.arrowmods import pa
from engine.storage import segment
from engine.storage.manifest import SegmentInfo
from engine.storage.merge import duplicate_keys
from engine.storage.schema import TS

# Rows an overlap may hold before the answer is left to a merge: past this the
# segments overlap for real (late or rewritten data) and a merge is the way anyway.
OVERLAP_ROWS = 1 << 18
_BATCH_ROWS = 1 << 16


def no_shared_key(
    db_dir: Path,
    infos: list[SegmentInfo],
    tags: list[str],
    opened: Callable[[SegmentInfo], BinaryIO],
) -> bool:
    """Whether no key is in two of ``infos``: their time ranges are disjoint, or the
    rows where they overlap (at most :data:`OVERLAP_ROWS` in all) hold no key twice.
    ``opened`` gives a segment's file open for reading (the caller's snapshot)."""
    budget = OVERLAP_ROWS
    for a, b in _overlapping_pairs(infos):
        low, high = b.min_ts, min(a.max_ts, b.max_ts)
        keys: list[pa.Table] = []
        for info in (a, b):
            for batch in _rows_between(db_dir, info, low, high, tags, opened):
                budget -= batch.num_rows
                if budget < 0:
                    return False  # read no further: memory stays within the budget
                keys.append(batch)
        if keys and duplicate_keys(pa.concat_tables(keys), tags):
            return False  # each segment holds a key once: a repeat is in both
    return True


def _overlapping_pairs(infos: list[SegmentInfo]) -> Iterator[tuple[SegmentInfo, SegmentInfo]]:
    """Each pair whose ``[min_ts, max_ts]`` ranges meet, the earlier-starting first."""
    ordered = sorted(infos, key=lambda info: info.min_ts)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.min_ts > a.max_ts:
                break  # every later one starts later still
            yield a, b


def _rows_between(
    db_dir: Path,
    info: SegmentInfo,
    low: int,
    high: int,
    tags: list[str],
    opened: Callable[[SegmentInfo], BinaryIO],
) -> Iterator[pa.Table]:
    """The key columns of the segment's rows with ``low <= ts <= high``, a batch of
    at most 65,536 rows at a time."""
    return segment.batches(
        db_dir,
        info,
        _BATCH_ROWS,
        start=low,
        end=high + 1,
        opened=opened(info),
        columns=[TS, *tags],
    )
