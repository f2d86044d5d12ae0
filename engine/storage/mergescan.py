"""The merged scan: a table's sorted sources merged into one sorted stream of batches.

A *source* yields tables sorted by the segment key (the tags by name, a null before any
value, then ``ts``), each key at most once: a segment, or the memtable once merged.
Sources are given oldest first; on a key two sources share, the newer one's fields win
as :func:`engine.storage.merge.upsert_merge` decides.

The merge goes in rounds. Every live source holds one decoded batch; the round's
*bound* is the smallest of the last keys those batches hold. No row still undecoded
can sort at or before the bound (each source is sorted, and its undecoded rows come
after its batch's last key, which is at least the bound), so the rows at or before it
are final: they are merged and emitted, and every source whose batch is used up
decodes its next. Memory is one batch per source plus one round, whatever the number
of rows; the output is the order ``select`` documents, in batches of bounded size.

A source found out of order before it gave any row is read whole and sorted (a
segment restored from a damaged archive still reads right, at the cost of its size
in memory); found later, it raises :class:`~engine.errors.Corruption` through its
``disorder`` callback, because rows already emitted may have been wrong to emit.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from engine.arrowmods import pa, pc
from engine.storage.merge import upsert_merge
from engine.storage.schema import TS, TableSchema, conform

# A series as Python compares it: per tag (0, "") for a null, (1, value) otherwise.
Series = tuple[tuple[int, str], ...]
# A row's key: its series, then its timestamp (an integer).
Key = tuple[Series, int]


def series_starts(rows: pa.Table, tags: list[str]) -> list[int]:
    """The rows of sorted ``rows`` that begin a series (the first row, and each whose
    tags differ from the row before it): vectorised, one pass per tag."""
    n = rows.num_rows
    if n == 0:
        return []
    differs: Any = None
    for tag in tags:
        column = rows.column(tag)
        here, before = column.slice(1), column.slice(0, n - 1)
        changed = pc.not_equal(here, before)
        if column.null_count:  # a null differs from a value, not from a null
            changed = pc.fill_null(changed, False)
            changed = pc.or_(changed, pc.xor(pc.is_null(here), pc.is_null(before)))
        differs = changed if differs is None else pc.or_(differs, changed)
    if differs is None:
        return [0]
    later = pc.indices_nonzero(differs).to_pylist()
    return [0, *(i + 1 for i in later)]


def series_at(rows: pa.Table, positions: list[int], tags: list[str]) -> list[Series]:
    """The series of the rows at ``positions``."""
    if not tags:
        return [() for _ in positions]
    at = pa.array(positions, pa.int64())
    values = [rows.column(tag).take(at).to_pylist() for tag in tags]
    return [
        tuple((0, "") if v is None else (1, v) for v in row) for row in zip(*values, strict=True)
    ]


def last_key_in_order(rows: pa.Table, tags: list[str]) -> Key | None:
    """The key of the last of ``rows`` (conformed, with every tag column) if they are
    in strict key order, each key once; None if they are not, or there are none."""
    if not rows.num_rows:
        return None
    index = _Index.of(rows, tags)
    return index.key(rows.num_rows - 1) if index.in_order() else None


@dataclass
class _Index:
    """Where a sorted batch's series begin, what they are, and its timestamps: the
    merge finds a key's place in it by bisection, without touching Arrow again."""

    starts: list[int]
    series: list[Series]
    ts: list[int]
    stamps: pa.Array  # ``ts`` as Arrow, for the order check

    @classmethod
    def of(cls, rows: pa.Table, tags: list[str]) -> _Index:
        starts = series_starts(rows, tags)
        stamps = rows.column(TS).cast(pa.int64()).combine_chunks()
        return cls(starts, series_at(rows, starts, tags), stamps.to_pylist(), stamps)

    def in_order(self) -> bool:
        """Whether the batch is sorted with each key once: its series increase, and its
        timestamps increase within each series (a step down or a repeat is allowed
        only where a series begins)."""
        if any(a >= b for a, b in pairwise(self.series)):
            return False
        n = len(self.stamps)
        if n < 2:
            return True
        rising = pc.greater(self.stamps.slice(1), self.stamps.slice(0, n - 1))
        if pc.all(rising).as_py():
            return True
        begins = set(self.starts)
        falls = pc.indices_nonzero(pc.invert(rising)).to_pylist()
        return all(i + 1 in begins for i in falls)

    def key(self, row: int) -> Key:
        run = bisect_right(self.starts, row) - 1
        return self.series[run], self.ts[row]

    def through(self, bound: Key) -> int:
        """How many rows (from the first) have a key at most ``bound``."""
        series, ts = bound
        run = bisect_right(self.series, series)  # the runs whose series <= the bound's
        if run == 0:
            return 0
        end = self.starts[run] if run < len(self.starts) else len(self.ts)
        if self.series[run - 1] < series:
            return end
        return bisect_right(self.ts, ts, self.starts[run - 1], end)


@dataclass
class _Cursor:
    """One source's decoded batch (conformed to the schema) and how far into it the
    merge has emitted."""

    batches: Iterator[pa.Table]
    schema: TableSchema
    precision: str
    disorder: Callable[[], Exception]
    rows: pa.Table | None = None
    index: _Index | None = None
    used: int = 0
    gave: bool = False  # whether any of its rows went out
    last: Key | None = None  # the last key of the batch held (or of the one before)

    def fill(self) -> bool:
        """Decode batches until one has rows left; False when the source is exhausted."""
        while self.rows is None or self.used >= self.rows.num_rows:
            batch = next(self.batches, None)
            if batch is None:
                self.rows = self.index = None
                return False
            if not batch.num_rows:
                continue
            batch = conform(batch, self.schema, self.precision)
            index = _Index.of(batch, self.schema.tags)
            if not self._in_order(index):
                if self.gave:
                    raise self.disorder()
                return self._read_whole(batch)
            self.rows, self.index, self.used = batch, index, 0
            self.last = index.key(batch.num_rows - 1)
        return True

    def _in_order(self, index: _Index) -> bool:
        if self.last is not None and index.key(0) <= self.last:
            return False
        return index.in_order()

    def _read_whole(self, batch: pa.Table) -> bool:
        """Make the rest of the source, with what was decoded, one sorted batch."""
        pending = [] if self.rows is None else [self.rows.slice(self.used)]
        rest = [*pending, batch, *(conform(b, self.schema, self.precision) for b in self.batches)]
        self.rows = upsert_merge(rest, self.schema, self.precision)
        self.batches = iter(())
        self.used = 0
        if not self.rows.num_rows:
            self.rows = self.index = None
            return False
        self.index = _Index.of(self.rows, self.schema.tags)
        self.last = self.index.key(self.rows.num_rows - 1)
        return True

    def take_through(self, bound: Key) -> _Piece | None:
        """The rows not yet emitted whose key is at most ``bound`` (None: no row)."""
        assert self.rows is not None and self.index is not None
        upto = max(self.index.through(bound), self.used)
        if upto == self.used:
            return None
        piece = _Piece(self.rows.slice(self.used, upto - self.used), self.index, self.used)
        self.used = upto
        self.gave = True
        return piece


@dataclass
class _Piece:
    """Rows ``first..first + len(rows)`` of a cursor's batch, with the batch's index."""

    rows: pa.Table
    index: _Index
    first: int

    def runs(self, age: int) -> Iterator[tuple[Series, int, int, int, int, int]]:
        """Per series in the piece: (series, first ts, age, offset in the piece,
        rows, last ts)."""
        starts, end = self.index.starts, self.first + self.rows.num_rows
        run = bisect_right(starts, self.first) - 1
        while run < len(starts) and starts[run] < end:
            low = max(starts[run], self.first)
            high = min(starts[run + 1] if run + 1 < len(starts) else end, end)
            ts = self.index.ts
            yield self.index.series[run], ts[low], age, low - self.first, high - low, ts[high - 1]
            run += 1


def _interleaved(pieces: list[_Piece]) -> pa.Table | None:
    """The pieces' rows in key order when no two of them share a series over
    overlapping times (the usual case: pieces of different partitions, or of segments
    one written after the other): their series runs put in order, and the rows cut
    out of the pieces as slices and joined, with no sort or gather of the rows (a
    gather costs ten times the copy). None when two runs of one series overlap in
    time (an upsert may be due): the caller merges them."""
    runs = sorted(run for age, piece in enumerate(pieces) for run in piece.runs(age))
    for before, after in pairwise(runs):
        if before[0] == after[0] and before[5] >= after[1]:
            return None
    cuts: list[list[int]] = []  # [age, offset, length], runs of one piece that follow on joined
    for _, _, age, start, length, _ in runs:
        last = cuts[-1] if cuts else None
        if last is not None and last[0] == age and last[1] + last[2] == start:
            last[2] += length
        else:
            cuts.append([age, start, length])
    slices = [pieces[age].rows.slice(start, length) for age, start, length in cuts]
    return pa.concat_tables(slices).combine_chunks()


def merged(
    sources: Iterable[tuple[Iterator[pa.Table], Callable[[], Exception]]],
    schema: TableSchema,
    precision: str,
    batch_rows: int,
    held: Callable[[int], object] | None = None,
) -> Iterator[pa.Table]:
    """The rows of ``sources`` (oldest first; each with the exception to raise if it
    turns out unsorted after giving rows) merged by key, in batches of at most
    ``batch_rows`` rows conformed to ``schema``. ``held``, if given, is told at each
    round how many rows the merge holds decoded (what its memory follows)."""
    cursors = [_Cursor(batches, schema, precision, disorder) for batches, disorder in sources]
    live = [c for c in cursors if c.fill()]
    while live:
        bound = min(c.last for c in live if c.last is not None)
        decoded = sum(c.rows.num_rows for c in live if c.rows is not None)
        pieces = [p for p in (c.take_through(bound) for c in live) if p is not None]
        if len(pieces) == 1:
            out = pieces[0].rows
        else:
            out = _interleaved(pieces)
            if out is None:
                out = upsert_merge([p.rows for p in pieces], schema, precision)
        if held is not None:
            held(decoded + out.num_rows)
        for offset in range(0, out.num_rows, batch_rows):
            yield out.slice(offset, batch_rows)
        live = [c for c in live if c.fill()]
