"""``db verify``: every byte a database keeps, checked against what vouches for it.

* the manifest: its checksum, version and fields (a damaged one stops here);
* every segment it lists: present, a plain file, its size and SHA-256 as the
  manifest recorded them, every Parquet page's CRC, its row count, its columns
  against the table's schema, and its timestamps inside its partition and
  equal to the recorded time range (a lying range would hide rows from reads);
* the WAL: headers, CRCs, payloads, transactions and the LSN chain from the
  manifest's checkpoint LSN on (:func:`engine.db.walcheck.verify`).

Files under ``tables/`` that no manifest lists are notes, not problems: they are
what a crash between a segment write and its manifest install leaves, and the
next writer removes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine import names
from engine.arrowmods import pa, pc
from engine.db import walcheck
from engine.db.database import Database
from engine.errors import Corruption
from engine.storage import manifest as manifest_format
from engine.storage import segment
from engine.storage.manifest import Manifest, SegmentInfo
from engine.storage.schema import TS, TableSchema


@dataclass
class DbVerifyReport:
    database: str
    ok: bool = True
    segments: int = 0
    segment_rows: int = 0
    segment_bytes: int = 0
    segments_without_digest: int = 0
    wal_records: int = 0
    checkpoint_lsn: int = 0
    last_lsn: int | None = None
    seconds: float = 0.0
    problems: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, file: str, what: str) -> None:
        self.problems.append({"file": file, "problem": what})
        self.ok = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verify_database(db_dir: Path, name: str) -> DbVerifyReport:
    started = time.perf_counter()
    report = DbVerifyReport(database=name)
    try:
        manifest = manifest_format.load(db_dir)
    except Corruption as exc:
        report.problem(manifest_format.FILENAME, exc.message)
        return report
    report.checkpoint_lsn = manifest.checkpoint_lsn
    for table, entry in sorted(manifest.tables.items()):
        for info in entry.segments:
            _verify_segment(db_dir, manifest, table, entry.schema, info, report)
    _note_unlisted(db_dir, manifest, report)
    wal_report = walcheck.verify(db_dir, name)
    report.wal_records = wal_report.records
    report.last_lsn = wal_report.last_lsn
    for item in wal_report.problems:
        where = f" offset {item['offset']}" if item["offset"] is not None else ""
        report.problem(f"wal/{item['file']}" if item["file"] else "wal", item["problem"] + where)
    report.notes += [{"file": f"wal/{n['file']}", "note": n["note"]} for n in wal_report.notes]
    report.seconds = time.perf_counter() - started
    return report


def _verify_segment(
    db_dir: Path,
    manifest: Manifest,
    table: str,
    schema: TableSchema,
    info: SegmentInfo,
    report: DbVerifyReport,
) -> None:
    report.segments += 1
    report.segment_rows += info.rows
    report.segment_bytes += info.bytes
    path = db_dir / info.file
    if path.is_symlink() or not path.is_file():
        report.problem(info.file, "missing" if not path.exists() else "not a plain file")
        return
    if not info.sha256:
        report.segments_without_digest += 1
    settings = manifest.settings
    width, precision = settings.partition_units, settings.precision
    try:  # a batch at a time: memory does not follow the segment's size
        batches = segment.batches(db_dir, info, VERIFY_BATCH_ROWS)
        problems = content_problems(batches, schema, info, width, precision)
    except Corruption as exc:
        report.problem(info.file, exc.message.split(" is damaged: ", 1)[-1])
        return
    for problem in problems:
        report.problem(info.file, problem)


# Rows decoded at a time while a segment is checked.
VERIFY_BATCH_ROWS = 65_536


def content_problems(
    batches: Iterable[pa.Table],
    schema: TableSchema,
    info: Any,
    partition_width: int,
    precision: str,
) -> list[str]:
    """What a decoded segment or archive file (``info``: its rows and time range), read
    as ``batches``, holds that its description denies."""
    problems: list[str] = []
    wanted = {f.name: f.type for f in schema.arrow_schema(precision)}
    low = high = None
    nulls, first = 0, True
    for rows in batches:
        if first:  # every batch has the file's columns
            first = False
            problems += _column_problems(rows.schema, wanted)
            if TS not in rows.column_names or rows.schema.field(TS).type != wanted[TS]:
                return problems or [f"no {TS!r} timestamp column"]
        ts = rows.column(TS).cast(pa.int64())
        nulls += ts.null_count
        span = pc.min_max(ts).as_py()
        if span["min"] is not None:
            low = span["min"] if low is None else min(low, span["min"])
            high = span["max"] if high is None else max(high, span["max"])
    if nulls:
        problems.append(f"{nulls} rows without a timestamp")
    if low is None or high is None:
        return problems
    if (low, high) != (info.min_ts, info.max_ts):
        problems.append(
            f"timestamps run from {low} to {high}, the manifest says {info.min_ts} to {info.max_ts}"
        )
    if low < info.partition or high >= info.partition + partition_width:
        problems.append(f"timestamps fall outside partition {info.partition}")
    return problems


def _column_problems(found: pa.Schema, wanted: dict[str, pa.DataType]) -> list[str]:
    problems = []
    for column in found:
        if column.name not in wanted:
            problems.append(f"column {column.name!r} is not in the table's schema")
        elif column.type != wanted[column.name]:
            problems.append(f"column {column.name!r} is {column.type}, not {wanted[column.name]}")
    return problems


def _note_unlisted(db_dir: Path, manifest: Manifest, report: DbVerifyReport) -> None:
    tables_dir = db_dir / names.TABLES_DIR
    if not tables_dir.is_dir():
        return
    live = manifest.segment_files()
    for path in sorted(tables_dir.rglob("*")):
        rel = path.relative_to(db_dir).as_posix()
        if path.is_file() and rel not in live:
            report.notes.append(
                {
                    "file": rel,
                    "note": "listed by no manifest: left by a crash, removed by the next writer",
                }
            )


@dataclass
class SalvageReport:
    database: str
    dry_run: bool
    segments: list[dict[str, Any]] = field(default_factory=list)
    rows_lost: int = 0
    partitions: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def salvage(db_dir: Path, name: str, *, dry_run: bool) -> SalvageReport:
    """Drop every segment that ``db verify`` finds damaged, counting the rows they held
    (an upper bound: a key also kept by another segment survives with its older values).
    The WAL is not touched (``wal repair`` is for that)."""
    report = SalvageReport(name, dry_run)
    found = verify_database(db_dir, name)
    damaged = {p["file"] for p in found.problems if p["file"].startswith(names.TABLES_DIR + "/")}
    listed = {
        s.file: (table, s)
        for table, e in manifest_format.load(db_dir).tables.items()
        for s in e.segments
        if s.file in damaged
    }
    for file, (table, info) in sorted(listed.items()):
        report.segments.append(
            {"file": file, "table": table, "partition": info.partition, "rows": info.rows}
        )
    report.rows_lost = sum(s["rows"] for s in report.segments)
    report.partitions = len({(s["table"], s["partition"]) for s in report.segments})
    if not dry_run and listed:
        with Database.open(db_dir, name, background=False) as db:
            db.drop_segments(set(listed))
    return report
