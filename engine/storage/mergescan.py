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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.arrowmods import pa
from engine.storage.merge import is_sorted, upsert_merge
from engine.storage.schema import TS, TableSchema, conform

# A key as Python compares it: per tag (0, "") for a null, (1, value) otherwise; then ts.
Key = tuple[Any, ...]


def key_at(rows: pa.Table, index: int, tags: list[str]) -> Key:
    """The segment key of row ``index`` of ``rows``, which hold every tag column."""
    parts: list[Any] = []
    for tag in tags:
        value = rows.column(tag)[index].as_py()
        parts.append((0, "") if value is None else (1, value))
    parts.append(rows.column(TS)[index].cast(pa.int64()).as_py())
    return tuple(parts)


def rows_at_most(rows: pa.Table, bound: Key, tags: list[str]) -> int:
    """How many of the sorted ``rows`` have a key at most ``bound`` (binary search)."""
    low, high = 0, rows.num_rows
    while low < high:
        middle = (low + high) // 2
        if key_at(rows, middle, tags) <= bound:
            low = middle + 1
        else:
            high = middle
    return low


@dataclass
class _Cursor:
    """One source's decoded batch (conformed to the schema) and how far into it the
    merge has emitted."""

    batches: Iterator[pa.Table]
    schema: TableSchema
    precision: str
    disorder: Callable[[], Exception]
    rows: pa.Table | None = None
    used: int = 0
    gave: bool = False  # whether any of its rows went out
    last: Key | None = None  # the last key of the batch before this one

    def fill(self) -> bool:
        """Decode batches until one has rows left; False when the source is exhausted."""
        while self.rows is None or self.used >= self.rows.num_rows:
            batch = next(self.batches, None)
            if batch is None:
                self.rows = None
                return False
            if not batch.num_rows:
                continue
            batch = conform(batch, self.schema, self.precision)
            if not self._in_order(batch):
                if self.gave:
                    raise self.disorder()
                return self._read_whole(batch)
            self.last = key_at(batch, batch.num_rows - 1, self.schema.tags)
            self.rows, self.used = batch, 0
        return True

    def _in_order(self, batch: pa.Table) -> bool:
        if self.last is not None and key_at(batch, 0, self.schema.tags) <= self.last:
            return False
        return is_sorted(batch, self.schema.tags)

    def _read_whole(self, batch: pa.Table) -> bool:
        """Make the rest of the source, with what was decoded, one sorted batch."""
        pending = [] if self.rows is None else [self.rows.slice(self.used)]
        rest = [*pending, batch, *(conform(b, self.schema, self.precision) for b in self.batches)]
        self.rows = upsert_merge(rest, self.schema, self.precision)
        self.used, self.last = 0, None
        self.batches = iter(())
        return bool(self.rows.num_rows > 0)

    def take_through(self, bound: Key) -> pa.Table:
        """The rows not yet emitted whose key is at most ``bound``."""
        assert self.rows is not None
        upto = rows_at_most(self.rows.slice(self.used), bound, self.schema.tags)
        piece = self.rows.slice(self.used, upto)
        self.used += upto
        self.gave = self.gave or upto > 0
        return piece

    def last_key(self) -> Key:
        assert self.rows is not None
        return key_at(self.rows, self.rows.num_rows - 1, self.schema.tags)


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
        bound = min(c.last_key() for c in live)
        decoded = sum(c.rows.num_rows for c in live if c.rows is not None)
        pieces = [p for p in (c.take_through(bound) for c in live) if p.num_rows]
        out = pieces[0] if len(pieces) == 1 else upsert_merge(pieces, schema, precision)
        if held is not None:
            held(decoded + out.num_rows)
        for offset in range(0, out.num_rows, batch_rows):
            yield out.slice(offset, batch_rows)
        live = [c for c in live if c.fill()]
