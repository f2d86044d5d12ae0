"""Deletes: which rows a ``DELETE`` WAL record removes, and removing them.

A delete (``tsadmin delete``) or an expiry (retention, ``engine/storage/retention.py``)
is one auto-committed ``DELETE`` record (its payload: ``engine/log/wal.py``). It
removes what was committed before it and nothing after it:

* the memtables are filtered when the record is applied (by the writer, by
  recovery's replay, by a standby), so a point written after the delete is
  never touched;
* segments hold only data from before the manifest's checkpoint LSN, so every
  delete past that LSN applies to all of them: readers filter the segments
  they read through it (:func:`without_deleted`) until the next checkpoint,
  which rewrites the segments holding matching rows (a segment the delete
  covers whole, as an expiry covers a partition, is dropped unread) and
  installs the manifest past the record. A crash before that install replays
  the record; after it, the rows are gone from the files. All or nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.arrowmods import pa, pc
from engine.errors import InvalidArgument
from engine.settings import units_from_ns
from engine.storage.manifest import SegmentInfo
from engine.storage.memtable import Memtable
from engine.storage.schema import TS

REASONS = ("delete", "retention")


@dataclass(frozen=True)
class DeleteSpec:
    """Rows with ``start <= ts < end`` (ns; None: unbounded) of ``table`` (None: every
    table) whose tags equal every ``where`` value. ``lsn``: its record's."""

    table: str | None
    start: int | None = None
    end: int | None = None
    where: tuple[tuple[str, str], ...] = ()
    reason: str = "delete"
    lsn: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "start": self.start,
            "end": self.end,
            "where": dict(self.where),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], lsn: int = 0) -> DeleteSpec:
        table, start, end = data["table"], data["start"], data["end"]
        where = data.get("where", {})
        if table is not None and not isinstance(table, str):
            raise ValueError("DELETE table is not a name")
        for bound in (start, end):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
                raise ValueError("DELETE bound is not an integer")
        if not isinstance(where, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in where.items()
        ):
            raise ValueError("DELETE where is not an object of strings")
        reason = data.get("reason", "delete")
        if reason not in REASONS:
            raise ValueError(f"DELETE reason {reason!r} is unknown")
        return cls(table, start, end, tuple(sorted(where.items())), reason, lsn)

    def applies_to(self, table: str) -> bool:
        return self.table is None or self.table == table

    def bounds(self, precision: str) -> tuple[int | None, int | None]:
        """``[start, end)`` in timestamp units of ``precision``: a unit value ``t`` is in
        the range iff ``start <= t * unit < end``, i.e. ``ceil(start / unit) <= t``."""
        return (
            None if self.start is None else units_from_ns(self.start, precision),
            None if self.end is None else units_from_ns(self.end, precision),
        )

    def touches(self, info: SegmentInfo, precision: str) -> bool:
        low, high = self.bounds(precision)
        return (low is None or info.max_ts >= low) and (high is None or info.min_ts < high)

    def covers(self, info: SegmentInfo, precision: str) -> bool:
        """Every row of the segment matches (no tag condition, its whole time range in)."""
        low, high = self.bounds(precision)
        inside = (low is None or info.min_ts >= low) and (high is None or info.max_ts < high)
        return not self.where and inside

    def matches(self, rows: pa.Table, precision: str) -> pa.ChunkedArray | pa.Array:
        """A boolean mask of the rows it removes (null never: a missing tag is no match)."""
        ts = rows.column(TS).cast(pa.int64())
        low, high = self.bounds(precision)
        mask: Any = pa.array([True] * rows.num_rows, pa.bool_())
        if low is not None:
            mask = pc.and_(mask, pc.greater_equal(ts, low))
        if high is not None:
            mask = pc.and_(mask, pc.less(ts, high))
        for tag, value in self.where:
            if tag not in rows.column_names:
                return pa.array([False] * rows.num_rows, pa.bool_())
            mask = pc.and_(mask, pc.fill_null(pc.equal(rows.column(tag), value), False))
        return mask

    def describe(self) -> str:
        what = "every table" if self.table is None else f"table {self.table}"
        where = " and ".join(f"{k}={v}" for k, v in self.where)
        return f"{self.reason} of {what}" + (f" where {where}" if where else "")


def without_deleted(
    rows: pa.Table, table: str, deletes: Iterable[DeleteSpec], precision: str
) -> pa.Table:
    """``rows`` of ``table`` without those any of ``deletes`` removes."""
    for spec in deletes:
        if not rows.num_rows:
            break
        if spec.applies_to(table):
            mask = spec.matches(rows, precision)
            if pc.any(mask).as_py():
                rows = rows.filter(pc.invert(mask))
    return rows


def apply_to_memtable(memtable: Memtable, spec: DeleteSpec, precision: str) -> int:
    """Filter the memtable's batches in place; returns the rows removed."""
    low, high = spec.bounds(precision)
    removed = 0
    for table in memtable.tables():
        if spec.applies_to(table):
            removed += memtable.filter_within(table, low, high, _remover(table, spec, precision))
    return removed


def _remover(table: str, spec: DeleteSpec, precision: str) -> Callable[[pa.Table], pa.Table]:
    def keep(rows: pa.Table) -> pa.Table:
        return without_deleted(rows, table, [spec], precision)

    return keep


def pending_for(deletes: Iterable[DeleteSpec], table: str) -> list[DeleteSpec]:
    return [d for d in deletes if d.applies_to(table)]


@dataclass
class DeleteReport:
    database: str
    table: str | None
    start: int | None
    end: int | None
    where: dict[str, str]
    rows: int = 0
    partitions: list[int] = field(default_factory=list)
    dry_run: bool = False
    lsn: int | None = None
    segments_rewritten: int = 0
    segments_dropped: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "partition_count": len(self.partitions)}


def check_where(where: list[str]) -> dict[str, str]:
    """``["host=a", "dc=x"]`` -> ``{"host": "a", "dc": "x"}`` (each tag once)."""
    out: dict[str, str] = {}
    for item in where:
        tag, sep, value = item.partition("=")
        if not sep or not tag:
            raise InvalidArgument(
                f"invalid tag condition {item!r}", hint="write it as tag=value", param="where"
            )
        if tag in out:
            raise InvalidArgument(
                f"tag {tag!r} is given twice", hint="a row has one value per tag", param="where"
            )
        out[tag] = value
    return out
