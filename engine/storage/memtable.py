"""The memtable: batches committed since the last checkpoint, in commit order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.arrowmods import pa, pc
from engine.storage.schema import TS


@dataclass
class Memtable:
    batches: dict[str, list[pa.Table]] = field(default_factory=dict)
    rows: int = 0
    nbytes: int = 0
    # per table and batch, its first and last timestamp: a write asks which batches it
    # may overwrite without looking into all of them
    spans: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def add(self, table: str, rows: pa.Table) -> None:
        self.batches.setdefault(table, []).append(rows)
        self.spans.setdefault(table, []).append(time_span(rows))
        self.rows += rows.num_rows
        self.nbytes += rows.nbytes

    def copy(self) -> Memtable:
        """The batches as they are now: what a reader sees (later adds do not show)."""
        return Memtable(
            {t: list(b) for t, b in self.batches.items()},
            self.rows,
            self.nbytes,
            {t: list(s) for t, s in self.spans.items()},
        )

    def overlapping(self, table: str, low: int, high: int) -> list[pa.Table]:
        """The batches of ``table`` holding a timestamp in ``[low, high]`` (maybe others)."""
        spans = self.spans.get(table, [])
        return [
            rows
            for rows, (first, last) in zip(self.batches.get(table, []), spans, strict=True)
            if first <= high and low <= last
        ]

    def filter_within(
        self, table: str, low: int | None, high: int | None, keep: Callable[[pa.Table], pa.Table]
    ) -> int:
        """Replace each batch of ``table`` holding a timestamp in ``[low, high)`` (``None``:
        unbounded) by ``keep`` of it; returns the rows removed. Batches outside are not
        looked at: a memtable holds thousands of small batches between checkpoints, and a
        delete every few writes would otherwise cost their number squared. The lists
        are swapped in one assignment each: a checkpoint reading a frozen memtable
        meanwhile sees the old list or the new one, never neither."""
        batches: list[pa.Table] = []
        spans: list[tuple[int, int]] = []
        removed = 0
        for rows, (first, last) in zip(self.batches[table], self.spans[table], strict=True):
            if (low is not None and last < low) or (high is not None and first >= high):
                batches.append(rows)
                spans.append((first, last))
                continue
            after = keep(rows)
            if after is rows:
                batches.append(rows)
                spans.append((first, last))
                continue
            removed += rows.num_rows - after.num_rows
            self.rows -= rows.num_rows - after.num_rows
            self.nbytes -= rows.nbytes - after.nbytes
            if after.num_rows:
                batches.append(after)
                spans.append(time_span(after))
        if removed:
            self.spans[table] = spans
            self.batches[table] = batches
        return removed

    def drop(self, table: str) -> None:
        self.spans.pop(table, None)
        for rows in self.batches.pop(table, []):
            self.rows -= rows.num_rows
            self.nbytes -= rows.nbytes

    def is_empty(self) -> bool:
        return self.rows == 0

    def tables(self) -> list[str]:
        return list(self.batches)


def time_span(rows: pa.Table) -> tuple[int, int]:
    """The first and last timestamp of non-empty ``rows``, as integers."""
    span = pc.min_max(rows.column(TS).cast(pa.int64()))
    return span["min"].as_py(), span["max"].as_py()
