"""Looking inside the WAL: inspect, verify, dump. Read-only; safe beside a live writer.

The files are read whole and never locked; a writer appending meanwhile shows
at worst as a short last record (reported as a torn tail in progress). A
checkpoint that rotates or deletes a file during the read is noticed (a
vanished file, an LSN gap) and the read is retried.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.arrowmods import pa
from engine.errors import Corruption, NotFound, Remedy
from engine.log import wal, walkinds
from engine.log.reader import FileScan, iter_records, scan_bytes
from engine.log.txn import Assembler, data_table
from engine.storage import manifest as manifest_format

ROLES = {wal.CURRENT: "current", wal.CHECKPOINT: "checkpoint"}


@dataclass
class RecordInfo:
    file: str
    offset: int
    lsn: int
    txn: int
    type: str
    table: str | None
    rows: int | None
    bytes: int
    raw_bytes: int
    crc: str = "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FileInfo:
    file: str
    role: str
    bytes: int
    version: int | None
    database: str | None
    start_lsn: int | None
    first_lsn: int | None
    last_lsn: int | None
    records: int
    valid_bytes: int
    problem: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Scanned:
    """Every WAL file of a database read once, with the manifest's checkpoint LSN."""

    checkpoint_lsn: int
    scans: list[FileScan]
    header_errors: dict[str, Corruption] = field(default_factory=dict)


def read_wal(db_dir: Path, attempts: int = 20) -> Scanned:
    """Read the manifest LSN and the WAL files consistently (retrying around a checkpoint)."""
    for attempt in range(attempts):
        try:
            scanned = _read_once(db_dir)
        except FileNotFoundError:
            time.sleep(0.02)
            continue
        if _has_gap(scanned) and attempt < attempts - 1:
            time.sleep(0.02)
            continue
        return scanned
    return _read_once(db_dir)


def _read_once(db_dir: Path) -> Scanned:
    checkpoint_lsn = manifest_format.load(db_dir).checkpoint_lsn
    scanned = Scanned(checkpoint_lsn, [])
    for path in wal.wal_files(db_dir / wal.WAL_DIR):
        data = path.read_bytes()
        try:
            scanned.scans.append(scan_bytes(data, path))
        except Corruption as exc:
            scanned.header_errors[path.name] = exc
    return scanned


def _has_gap(scanned: Scanned) -> bool:
    first = scanned.scans[0].header if scanned.scans else None
    return first is not None and first.start_lsn > scanned.checkpoint_lsn + 1


# -- inspect ------------------------------------------------------------------------


def file_info(scan: FileScan) -> FileInfo:
    header = scan.header
    problem = None
    if scan.problem is not None:
        problem = {
            "offset": scan.problem.offset,
            "kind": scan.problem.kind,
            "reason": scan.problem.reason,
            "bytes": scan.file_size - scan.problem.offset,
        }
    return FileInfo(
        file=scan.path.name,
        role=ROLES.get(scan.path.name, "other"),
        bytes=scan.file_size,
        version=header.version if header else None,
        database=header.database if header else None,
        start_lsn=header.start_lsn if header else None,
        first_lsn=scan.records[0].lsn if scan.records else None,
        last_lsn=scan.records[-1].lsn if scan.records else None,
        records=len(scan.records),
        valid_bytes=scan.end_offset,
        problem=problem,
    )


def record_info(scan: FileScan, record: wal.Record) -> RecordInfo:
    described = walkinds.of(record).describe(record)
    return RecordInfo(
        scan.path.name,
        record.offset,
        record.lsn,
        record.txn,
        record.type.name,
        described.table,
        described.rows,
        record.size,
        len(record.payload) if described.raw_bytes is None else described.raw_bytes,
    )


@dataclass
class RecordFilter:
    from_lsn: int | None = None
    to_lsn: int | None = None
    txn: int | None = None
    table: str | None = None
    limit: int | None = None

    def keeps(self, record: wal.Record) -> bool:
        if self.from_lsn is not None and record.lsn < self.from_lsn:
            return False
        if self.to_lsn is not None and record.lsn > self.to_lsn:
            return False
        if self.txn is not None and record.txn != self.txn:
            return False
        table = data_table(record)
        if self.table is not None and table is not None:
            return table == self.table
        return self.table is None


def inspect(db_dir: Path, chosen: RecordFilter) -> dict[str, Any]:
    """The WAL files and (filtered) records of a database."""
    scanned = read_wal(db_dir)
    files = [file_info(s).to_json() for s in scanned.scans]
    files += [
        {"file": name, "role": ROLES.get(name, "other"), "problem": {"reason": str(exc)}}
        for name, exc in scanned.header_errors.items()
    ]
    records: list[dict[str, Any]] = []
    for scan, record in iter_records(scanned.scans):
        if chosen.limit is not None and len(records) >= chosen.limit:
            break
        if chosen.keeps(record):
            records.append(record_info(scan, record).to_json())
    return {"checkpoint_lsn": scanned.checkpoint_lsn, "files": files, "records": records}


# -- verify -------------------------------------------------------------------------


@dataclass
class VerifyReport:
    database: str
    ok: bool = True
    files: int = 0
    records: int = 0
    bytes: int = 0
    transactions_committed: int = 0
    transactions_trailing: int = 0
    first_lsn: int | None = None
    last_lsn: int | None = None
    checkpoint_lsn: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)

    def problem(self, file: str, offset: int | None, what: str, lsn: int | None = None) -> None:
        self.problems.append({"file": file, "offset": offset, "lsn": lsn, "problem": what})
        self.ok = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verify(db_dir: Path, database: str) -> VerifyReport:
    """Check every header, CRC, LSN, payload and transaction of the WAL (see the module doc)."""
    report = VerifyReport(database=database)
    try:
        scanned = read_wal(db_dir)
    except Corruption as exc:
        report.problem("manifest.json", None, str(exc))
        return report
    report.checkpoint_lsn = scanned.checkpoint_lsn
    for name, error in scanned.header_errors.items():
        report.problem(name, 0, f"bad file header: {error}")
    for scan in scanned.scans:
        _verify_file(scan, database, report)
    _verify_continuity(scanned, report)
    _verify_transactions(scanned, report)
    return report


def _verify_file(scan: FileScan, database: str, report: VerifyReport) -> None:
    name = scan.path.name
    report.files += 1
    report.records += len(scan.records)
    report.bytes += scan.file_size
    assert scan.header is not None
    if scan.header.database != database:
        report.problem(name, 0, f"header names database {scan.header.database!r}")
    if scan.records:
        first, last = scan.records[0].lsn, scan.records[-1].lsn
        report.first_lsn = first if report.first_lsn is None else min(report.first_lsn, first)
        report.last_lsn = last if report.last_lsn is None else max(report.last_lsn, last)
    for record in scan.records:
        try:
            walkinds.of(record).decode(record)
        except Exception as exc:
            report.problem(name, record.offset, f"payload does not decode: {exc}", record.lsn)
    problem = scan.problem
    if problem is None:
        return
    tail_bytes = scan.file_size - problem.offset
    if problem.kind == "short" and name == wal.CURRENT:
        report.notes.append(
            {
                "file": name,
                "offset": problem.offset,
                "note": f"torn tail of {tail_bytes} bytes ({problem.reason}): an "
                "unacknowledged write, cut at the next open",
            }
        )
    elif problem.kind == "bad_tail" and name == wal.CURRENT:
        report.problem(
            name,
            problem.offset,
            f"last record fails its check ({problem.reason}): a torn "
            "page write or a flipped bit; the next open cuts it off",
        )
    else:
        follows = (
            f"; valid records follow at offset {problem.next_valid_offset}"
            if problem.valid_after
            else ""
        )
        report.problem(name, problem.offset, f"{problem.reason}{follows}")


def _verify_continuity(scanned: Scanned, report: VerifyReport) -> None:
    expected = scanned.checkpoint_lsn + 1
    for scan in scanned.scans:
        assert scan.header is not None
        if scan.header.start_lsn > expected:
            report.problem(
                scan.path.name,
                0,
                f"starts at LSN {scan.header.start_lsn}, but the "
                f"manifest's checkpoint LSN {scanned.checkpoint_lsn} needs {expected}",
            )
        if scan.records:
            expected = max(expected, wal.next_lsn_after(scan.records[-1]))
        elif scan.header.start_lsn > expected - 1:
            expected = max(expected, scan.header.start_lsn)


def _verify_transactions(scanned: Scanned, report: VerifyReport) -> None:
    txns = Assembler()
    for scan, record in iter_records(scanned.scans):
        closed = txns.add(record)
        if closed is None:
            continue
        try:
            commit = closed.committed
        except Exception:
            continue  # already reported as a payload that does not decode
        assert commit is not None
        if commit.data_records != len(closed.data) and record.lsn > scanned.checkpoint_lsn:
            report.problem(
                scan.path.name,
                record.offset,
                f"transaction {record.txn} commits "
                f"{commit.data_records} DATA records, {len(closed.data)} found",
                record.lsn,
            )
        report.transactions_committed += 1
    trailing = txns.open
    if trailing:
        report.transactions_trailing = 1
        for txn in trailing[:-1]:
            first = txn.data[0]
            report.problem(
                "",
                first.offset,
                f"transaction {txn.txn} has no COMMIT and is not the last one",
                first.lsn,
            )
        report.notes.append(
            {
                "file": "",
                "offset": trailing[-1].data[0].offset,
                "note": f"transaction {trailing[-1].txn} has no COMMIT yet: the last one, "
                "rolled back at the next open unless a writer is still writing it",
            }
        )


# -- dump ---------------------------------------------------------------------------


def dump(db_dir: Path, lsn: int) -> tuple[RecordInfo, pa.Table | dict[str, Any]]:
    """One record: its description and its rows (DATA) or content (DDL, COMMIT)."""
    scanned = read_wal(db_dir)
    for scan, record in iter_records(scanned.scans):
        if record.lsn != lsn:
            continue
        return record_info(scan, record), walkinds.of(record).content(record)
    raise NotFound(
        f"no WAL record with LSN {lsn}", hint="list the WAL's records to see which LSNs it holds"
    ).advise(Remedy.LIST_WAL_RECORDS, db_dir.name)
