"""The sources of a merged scan: which of a table's segments a scan reads, and how.

- A bounded scan reads segments one after the other while their rows within bounds
  are few, and sorts them once (:class:`FewRows`).
- A scan limited to a few rows reads only the segments whose footers say they may
  hold one of them (:class:`Leading`).
- More segments than a merge reads side by side are merged in groups into spilled
  runs first (:func:`spilled_runs`), and the runs are the sources.
- Segments are read two at a time on threads of their own (:func:`read_ahead`).

:func:`engine.db.reads.scan_batches` puts them together; nothing here takes a lock.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar, cast

from engine.arrowmods import pa
from engine.io.ahead import ahead
from engine.io.fileio import IO
from engine.storage import mergescan, segment, spill
from engine.storage.boundedread import lean, plain_strings
from engine.storage.manifest import SegmentInfo
from engine.storage.merge import upsert_merge
from engine.storage.schema import TableSchema, conform

# a scan's source and the error it raises if found unsorted (a string: pyarrow loads
# on first use, and `db list` never uses it)
Source: TypeAlias = "tuple[Iterator[pa.Table], Callable[[], Exception]]"
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class FewRows:
    """A bounded scan's segments read one after the other while the rows within bounds
    they hold number at most ``few``: a few rows from each of many segments
    (one host over every partition) cost one sort, not a merge whose every round pays
    for each source. Their tag strings stay dictionaries until all are read, then are
    decoded once per column, not once per segment."""

    read: Callable[..., Iterator[pa.Table]]  # a segment's rows (``dictionaries=True``)
    keep: Callable[[pa.Table], pa.Table]  # what pending deletes leave of rows
    schema: TableSchema
    precision: str
    disorder: Callable[[SegmentInfo], Callable[[], Exception]]
    few: int  # the most rows read this way

    def sorted_while_few(
        self, stored: list[SegmentInfo], held: Callable[[int], object] | None
    ) -> tuple[list[Source], list[SegmentInfo]]:
        """The sources the rows of ``stored`` (oldest first) make: those of the segments
        read whole as one, then, past ``few`` rows, the segment being read (what it gave,
        then the rest of it); and the segments still to open."""
        whole: list[pa.Table] = []  # the rows of the segments read to their end
        total = 0
        for position, (mine, rest) in enumerate(read_ahead(stored, self._first_rows)):
            total += sum(batch.num_rows for batch in mine)
            if rest is not None or total > self.few:  # too many to sort: merged as they come
                batches = itertools.chain(mine, rest or ())
                resumed = (
                    map(self.keep, map(plain_strings, batches)),
                    self.disorder(stored[position]),
                )
                return [*self._sorted(whole), resumed], stored[position + 1 :]
            whole += mine
        if held is not None:
            held(total)
        return self._sorted(whole), []

    def _first_rows(self, info: SegmentInfo) -> tuple[list[pa.Table], Iterator[pa.Table] | None]:
        """A segment's first batches, up to just past ``few`` rows, and the rest of them
        (None when it gave them all)."""
        batches = self.read(info, dictionaries=True)
        first: list[pa.Table] = []
        rows = 0
        for batch in batches:
            first.append(lean(batch))
            rows += batch.num_rows
            if rows > self.few:
                return first, batches
        return first, None

    def _sorted(self, tables: list[pa.Table]) -> list[Source]:
        """``tables`` (oldest first) merged by one sort, as a source; none without rows."""
        if tables and all(t.schema == tables[0].schema for t in tables):
            tables = [pa.concat_tables(tables)]  # decoded once per column, not per segment
        kept = [self.keep(plain_strings(t)) for t in tables]
        rows = upsert_merge(kept, self.schema, self.precision)
        return [(iter([rows]), never_unsorted)] if rows.num_rows else []


@dataclass(frozen=True)
class Leading:
    """Which segments may hold one of a limited scan's first rows, told from their
    footers: most of a table's segments cannot, and each one opened costs a decoded
    row group (the first ten rows of a 100M-row table read every one of its 613).

    Segments are unique by key, so the key of any one segment's ``limit``-th row (within
    the bounds, after deletes) is at least that of the merge's ``limit``-th row; and no
    row of a segment sorts before (its first series, its smallest time). A segment
    whose lower bound is past that key cannot give one of the first rows."""

    db_dir: Path
    schema: TableSchema
    precision: str
    limit: int
    read: Callable[..., Iterator[pa.Table]]  # a segment's rows within the scan's bounds
    keep: Callable[[pa.Table], pa.Table]  # what pending deletes leave of rows

    def segments(self, stored: list[SegmentInfo]) -> list[SegmentInfo]:
        """Those of ``stored`` (oldest first, kept in that order) the scan must read:
        all of them when no segment's first rows can set the cut."""
        lows = list(read_ahead(stored, self._lower_bound))
        known = sorted((low, i) for i, low in enumerate(lows) if low is not None)
        cut = None
        for _, i in known[:LEADING_TRIES]:
            cut = mergescan.last_key_in_order(self._first_rows(stored[i]), self.schema.tags)
            if cut is not None:
                break
        if cut is None:
            return stored
        return [info for info, low in zip(stored, lows, strict=True) if low is None or low <= cut]

    def _lower_bound(self, info: SegmentInfo) -> mergescan.Key | None:
        tags = segment.first_series(self.db_dir, info)
        if tags is None:
            return None
        series = tuple(
            (0, "") if tags.get(t) is None else (1, str(tags[t])) for t in self.schema.tags
        )
        return series, info.min_ts

    def _first_rows(self, info: SegmentInfo) -> pa.Table:
        """The segment's first ``limit`` rows within bounds after deletes, conformed to
        the schema; none when it has fewer (they cannot set the cut)."""
        taken: list[pa.Table] = []
        rows = 0
        batches = self.read(info)
        try:
            for batch in batches:
                taken.append(conform(self.keep(batch), self.schema, self.precision))
                rows += taken[-1].num_rows
                if rows >= self.limit:
                    break
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        if rows < self.limit:
            return self.schema.arrow_schema(self.precision).empty_table()
        return pa.concat_tables(taken).slice(0, self.limit)


# Segments a limited scan reads the first rows of to set its cut before it gives up
# and reads every segment (their first rows all deleted or out of bounds).
LEADING_TRIES = 4


def read_ahead(items: list[T], read: Callable[[T], R], window: int = 2) -> Iterator[R]:
    """``read`` of each of ``items``, in order, up to ``window`` of them read at once on
    threads of their own: pyarrow releases the GIL while it parses a footer or decodes,
    so two segments read side by side use both cores. A reader never outlives this."""
    results: dict[int, tuple[bool, object]] = {}
    running: dict[int, threading.Thread] = {}

    def start(index: int) -> None:
        def work() -> None:
            try:
                results[index] = (True, read(items[index]))
            except BaseException as exc:  # handed to the consumer, raised there
                results[index] = (False, exc)

        running[index] = threading.Thread(target=work, name="segment-read", daemon=True)
        running[index].start()

    for index in range(min(window, len(items))):
        start(index)
    try:
        for index in range(len(items)):
            running.pop(index).join()
            if index + window < len(items):
                start(index + window)
            done, value = results.pop(index)
            if not done:
                assert isinstance(value, BaseException)
                raise value
            yield cast(R, value)
    finally:
        for thread in running.values():
            thread.join()


def grouped(stored: list[SegmentInfo], most: int) -> list[list[SegmentInfo]]:
    """``stored`` (oldest first) cut into runs of consecutive segments, at most
    ``most`` each and as even as that allows: merging the groups in order keeps the
    newer segment's row for a key."""
    count = -(-len(stored) // most)
    size = -(-len(stored) // count)
    return [stored[i : i + size] for i in range(0, len(stored), size)]


def spilled_runs(
    directory: Path,
    groups: Iterable[list[Source]],
    schema: TableSchema,
    precision: str,
    batch_rows: int,
    run_rows: int,
    limit: int | None,
    held: Callable[[int], object] | None,
) -> list[Source]:
    """Each group merged and written to a run file in ``directory`` (only its first
    ``limit`` rows when there is a limit: the first rows overall are among them),
    and the runs as sources for the last merge, oldest first. ``groups`` opens each
    group as it is reached, after the previous one is written and closed."""
    arrow_schema = schema.arrow_schema(precision)
    runs = []
    for index, group in enumerate(groups):
        merging = mergescan.merged(group, schema, precision, batch_rows, held)
        rows = ahead(merging, name="spill-merge")  # merges the next rows while these are written
        run = spill.Run(directory / f"{index:06d}.arrows", arrow_schema, runs_in=schema.tags)
        with closing(rows):  # a limit stops early: the group's files close now
            runs.append(run.write(rows if limit is None else first_rows(rows, limit), run_rows))
    return [(run.batches(), never_unsorted) for run in runs]


def removed_after(directory: Path, batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """``batches``, then ``directory`` removed, however the consumer stops."""
    try:
        yield from batches
    finally:
        IO.remove_tree(directory)


def first_rows(batches: Iterator[pa.Table], limit: int) -> Iterator[pa.Table]:
    """The first ``limit`` rows of ``batches``; stops reading there."""
    left = limit
    for batch in batches if left > 0 else ():
        yield batch.slice(0, left)
        left -= batch.num_rows
        if left <= 0:
            return


def never_unsorted() -> Exception:  # pragma: no cover - a merge's output is sorted
    return AssertionError("merged rows (memtables, a spilled run) are sorted")
