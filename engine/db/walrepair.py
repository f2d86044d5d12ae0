"""Repairing the WAL: cut a torn tail, or salvage the valid records around corruption.

Both hold the writer lock, so they never run beside a writer, and both can
describe their plan without doing it (``dry_run``).

* A torn tail of ``current.wal`` (a short or failing last record) is cut off:
  exactly what the next open would do, done now and reported.
* ``salvage`` copies the WAL files aside (``salvaged/<UTC time>/``), then
  keeps every valid record past the manifest's checkpoint LSN, drops damaged
  byte ranges, drops every transaction that lost a record (a COMMIT names
  how many DATA records it needs) or its COMMIT, re-creates schema changes
  whose DDL record was lost from the data that needs them, and writes one new
  ``current.wal`` (atomically; ``checkpoint.wal`` is then removed) in which
  every kept record keeps its LSN: a ``GAP`` record stands for each run of
  lost LSNs (replicas address records by LSN), and a re-created schema change
  takes a lost LSN before the data that needs it. Only if no lost LSN is free
  there are the records from that point on renumbered, and the report says so.
  The report lists what was lost: byte ranges, LSN ranges, transactions and the
  rows known to be in them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import Corruption, Remedy, StorageError
from engine.io.fileio import IO
from engine.io.lock import WriterLock
from engine.log import salvage, wal
from engine.log.reader import Damage, Policy, Reader, scan_bytes
from engine.storage import manifest as manifest_format

SALVAGE_DIR = "salvaged"


@dataclass
class RepairReport:
    database: str
    dry_run: bool
    salvage: bool
    needed: bool = False
    actions: list[str] = field(default_factory=list)
    bytes_truncated: int = 0
    dropped_regions: list[dict[str, Any]] = field(default_factory=list)
    lost_lsn_ranges: list[list[int]] = field(default_factory=list)
    transactions_dropped: list[int] = field(default_factory=list)
    rows_dropped: int = 0
    records_kept: int = 0
    records_dropped: int = 0
    backup_dir: str | None = None

    @property
    def salvaging(self) -> bool:
        """The plan rebuilds the WAL (rather than cutting a tail or doing nothing)."""
        return self.salvage and self.needed and self.bytes_truncated == 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def repair(db_dir: Path, database: str, *, salvage: bool, dry_run: bool) -> RepairReport:
    lock = WriterLock(db_dir, database)
    try:
        report = RepairReport(database=database, dry_run=dry_run, salvage=salvage)
        checkpoint_lsn = manifest_format.load(db_dir).checkpoint_lsn
        files = wal.wal_files(db_dir / wal.WAL_DIR)
        plan = _tail_plan(files, database)
        if plan is not None:
            _cut_tails(plan, report, dry_run)
            return report
        if not salvage:
            raise Corruption(
                f"the WAL of {database} is damaged in a way a crash cannot cause; "
                "cutting a torn tail will not fix it",
                hint="check the WAL to see the damage; a dry run of a salvaging repair says "
                "what it would keep and lose",
            ).advise(Remedy.VERIFY_WAL, database)
        _salvage(db_dir, database, files, checkpoint_lsn, report, dry_run)
        return report
    finally:
        lock.release()


# -- torn tails ---------------------------------------------------------------------


def _tail_plan(files: list[Path], database: str) -> list[tuple[Path, int, int]] | None:
    """(file, cut offset, bytes) for every torn tail, or None if there is worse damage."""
    plan = []
    for path in files:
        data = path.read_bytes()
        try:
            scan = scan_bytes(data, path)
        except Corruption:
            whole = wal.header_size(database)
            if path.name == wal.CURRENT and len(data) < whole:
                plan.append((path, 0, len(data)))  # a header cut short while being created
                continue
            return None
        if scan.problem is None:
            continue
        if path.name != wal.CURRENT or not scan.problem.is_tail:
            return None
        plan.append((path, scan.problem.offset, scan.file_size - scan.problem.offset))
    return plan


def _cut_tails(plan: list[tuple[Path, int, int]], report: RepairReport, dry_run: bool) -> None:
    if not plan:
        report.actions.append("nothing to repair: the WAL is sound")
        return
    report.needed = True
    for path, offset, size in plan:
        report.bytes_truncated += size
        report.actions.append(f"cut {size} bytes of torn tail off {path.name} at offset {offset}")
        if dry_run:
            continue
        if offset == 0:
            IO.remove_many([path])
        else:
            wal.truncate_file(path, offset)


# -- salvage -------------------------------------------------------------------------


def _valid_records(data: bytes, path: Path, report: RepairReport) -> list[wal.Record]:
    """Every valid record of one file, skipping damaged ranges (which are reported)."""
    try:
        start = wal.parse_file_header(data, path).size
    except Corruption:
        start = 0

    def dropped(damage: Damage) -> None:
        report.dropped_regions.append(
            {
                "file": path.name,
                "offset": damage.offset,
                "bytes": damage.end - damage.offset,
                "reason": damage.reason,
            }
        )

    return list(Reader(data, start, Policy.SKIP_DAMAGED, after_lsn=0, reporter=dropped))


def _salvage(
    db_dir: Path,
    database: str,
    files: list[Path],
    checkpoint_lsn: int,
    report: RepairReport,
    dry_run: bool,
) -> None:
    report.needed = True
    records = [r for path in files for r in _valid_records(path.read_bytes(), path, report)]
    records = [r for r in records if r.lsn > checkpoint_lsn]
    report.lost_lsn_ranges = _gaps([r.lsn for r in records], checkpoint_lsn)
    losses = salvage.Losses()
    kept = salvage.complete_transactions(records, losses)
    report.transactions_dropped, report.rows_dropped = losses.transactions, losses.rows
    catalog = {n: e.schema.copy() for n, e in manifest_format.load(db_dir).tables.items()}
    kept = salvage.with_schema_for(kept, catalog)
    report.records_kept = sum(1 for r in kept if r.lsn >= 0)
    report.records_dropped = len(records) - report.records_kept
    report.actions.append(
        f"keep {report.records_kept} valid record(s) past checkpoint LSN {checkpoint_lsn}; drop "
        f"{len(report.dropped_regions)} damaged range(s), {len(report.transactions_dropped)} "
        f"transaction(s) that lost records ({report.rows_dropped} rows known)"
    )
    if dry_run:
        return
    backup = db_dir / SALVAGE_DIR / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    _keep_originals(files, backup)
    report.backup_dir = str(backup)
    report.actions.append(f"copied the original WAL files to {backup}")
    identity = manifest_format.load(db_dir)
    content = wal.encode_file_header(database, checkpoint_lsn + 1, identity.uuid, identity.epoch)
    numbered, renumbered_from = salvage.stable_lsns(kept, checkpoint_lsn + 1)
    for lsn, record in numbered:
        content += wal.encode_record(lsn, record.txn, record.type, record.payload)
    if renumbered_from is not None:
        report.actions.append(
            f"records from LSN {renumbered_from} on were renumbered (a re-created schema "
            "change found no lost LSN to take): replicas of this database need a reseed"
        )
    wal_dir = db_dir / wal.WAL_DIR
    IO.write_file_atomic(wal_dir / wal.CURRENT, content, "wal.salvage")
    IO.remove_many([wal_dir / wal.CHECKPOINT])
    report.actions.append(f"wrote a new current.wal of {len(kept)} record(s)")


def _keep_originals(files: list[Path], backup: Path) -> None:
    """Copy the WAL files to ``backup``, fsynced and checked whole, before anything is
    replaced; a copy that fails (a full disk) leaves no partial copy behind."""
    try:
        IO.mkdirs(backup)
        for path in files:
            IO.copy_file(path, backup / path.name, "wal.salvage_copy")
            if (backup / path.name).stat().st_size != path.stat().st_size:
                raise StorageError(f"the copy of {path} in {backup} is incomplete")
    except BaseException:
        IO.remove_tree(backup)
        raise


def _gaps(lsns: list[int], checkpoint_lsn: int) -> list[list[int]]:
    gaps, expected = [], checkpoint_lsn + 1
    for lsn in lsns:
        if lsn > expected:
            gaps.append([expected, lsn - 1])
        expected = lsn + 1
    return gaps
