"""Retention: data older than a database's retention period goes, a partition at a time.

A database with ``retention`` set (``engine/settings.py``; none by default)
keeps the partitions that end after ``now - retention``. Any writer, at each
checkpoint (the interval, size and memory triggers, ``tsadmin checkpoint``,
a clean close), expires the partitions that ended before that: it logs one
``DELETE`` record (reason ``retention``) for every table and the time before
the first partition still kept, and the checkpoint drops those partitions'
segments unread (``engine/storage/deletes.py``): expiring costs no rewriting of data.
Being logged, an expiry is replayed after a crash and shipped to replicas like
any write; a standby never expires anything on its own.

At ingest, a point older than ``now - retention`` is refused as a rejected
line with its reason, as InfluxDB drops points outside its retention policy;
it never stops the ingest.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.arrowmods import pa, pc
from engine.settings import Settings, ns_per_unit, units_from_ns
from engine.storage.deletes import DeleteSpec
from engine.storage.manifest import Manifest
from engine.storage.memtable import Memtable
from engine.storage.schema import TS


def oldest_kept_ns(settings: Settings, now_ns: int | None = None) -> int | None:
    """Points older than this (ns) are refused at ingest; None: no retention."""
    if not settings.retention_ns:
        return None
    return (time.time_ns() if now_ns is None else now_ns) - settings.retention_ns


def expiry_cutoff_ns(settings: Settings, now_ns: int | None = None) -> int | None:
    """The start of the oldest partition kept: every partition before it ended at or
    before ``now - retention``."""
    oldest = oldest_kept_ns(settings, now_ns)
    if oldest is None:
        return None
    return oldest - oldest % settings.partition_ns


def expiry_due(
    settings: Settings, manifest: Manifest, memtables: list[Memtable], now_ns: int | None = None
) -> DeleteSpec | None:
    """The expiry to log now, if any stored or pending data lies before the cutoff."""
    cutoff = expiry_cutoff_ns(settings, now_ns)
    if cutoff is None:
        return None
    cutoff_units = units_from_ns(cutoff, settings.precision)
    stored = any(
        info.min_ts < cutoff_units for entry in manifest.tables.values() for info in entry.segments
    )
    pending = any(
        first < cutoff_units
        for memtable in memtables
        for spans in memtable.spans.values()
        for first, _last in spans
    )
    if not (stored or pending):
        return None
    return DeleteSpec(table=None, start=None, end=cutoff, reason="retention")


@dataclass
class ExpiryPreview:
    """What an expiry under some settings removes now: the partitions (their start, ns)
    and tables it empties, and the rows they hold as stored (a point overwritten in a
    later segment of its partition counts once per segment: expiry drops files unread,
    so their rows are not merged to count them)."""

    cutoff_ns: int | None
    partitions: list[int] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    rows: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "partition_count": len(self.partitions)}


def preview_expiry(
    settings: Settings, manifest: Manifest, memtables: list[Memtable], now_ns: int | None = None
) -> ExpiryPreview:
    """What :func:`expiry_due` would remove now under ``settings`` (see the class)."""
    cutoff = expiry_cutoff_ns(settings, now_ns)
    preview = ExpiryPreview(cutoff)
    if cutoff is None:
        return preview
    cutoff_units = units_from_ns(cutoff, settings.precision)
    width = settings.partition_units
    partitions: set[int] = set()  # partition starts, in the database's unit
    tables: set[str] = set()
    for table, entry in manifest.tables.items():
        for info in entry.segments:
            if info.min_ts < cutoff_units:
                partitions.add(info.min_ts - info.min_ts % width)
                tables.add(table)
                preview.rows += info.rows
    for memtable in memtables:
        for table, batches in memtable.batches.items():
            for rows in batches:
                ts = rows.column(TS).cast(pa.int64())
                old = pc.filter(ts, pc.less(ts, cutoff_units))
                if len(old):
                    tables.add(table)
                    preview.rows += len(old)
                    starts = {t - t % width for t in (pc.min(old).as_py(), pc.max(old).as_py())}
                    partitions |= {p for p in range(min(starts), max(starts) + 1, width)}
    unit = ns_per_unit(settings.precision)
    preview.partitions = sorted(p * unit for p in partitions)
    preview.tables = sorted(tables)
    return preview


def too_old(ts: pa.Array | pa.ChunkedArray, oldest_ns: int, precision: str) -> pa.Array:
    """A mask of the timestamps (in ``precision`` units, or a timestamp type) before
    ``oldest_ns``."""
    values = ts.cast(pa.int64()) if not pa.types.is_integer(ts.type) else ts
    return pc.less(values, units_from_ns(oldest_ns, precision))


def refusal(settings: Settings) -> str:
    return f"point is older than the retention period ({settings.retention_label}) of the database"
