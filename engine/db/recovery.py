"""Recovery: rebuild the state after the last checkpoint from the WAL.

Replays ``checkpoint.wal`` then ``current.wal``, records with an LSN past the
manifest's ``checkpoint_lsn`` only. DDL records apply at once; ``DATA``
records wait for their transaction's ``COMMIT``; transactions without one are
rolled back and counted. A torn tail of ``current.wal`` (an invalid record with
nothing valid after it) is cut off when ``repair`` is set and reported either
way. Anything else invalid is :class:`Corruption`, naming file and offset.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import Corruption, Remedy
from engine.io.fileio import IO
from engine.log import wal, walkinds
from engine.log.reader import FileScan, iter_records, scan_bytes
from engine.log.txn import Assembler
from engine.settings import Settings
from engine.storage import manifest as manifest_format
from engine.storage.deletes import DeleteSpec
from engine.storage.manifest import Manifest
from engine.storage.memtable import Memtable
from engine.storage.schema import TableSchema


class WalGap(Corruption):
    """The WAL does not hold every record after the checkpoint LSN.

    A reader racing a checkpoint sees this transiently and reads again.
    """


REPAIR_HINT = (
    "check the WAL to see the damage, then a dry run of a salvaging repair to see what it "
    "would keep"
)


@dataclass
class RecoveryReport:
    database: str
    needed: bool = False
    files: list[str] = field(default_factory=list)
    checkpoint_lsn: int = 0
    last_lsn: int = 0
    records_scanned: int = 0
    records_replayed: int = 0
    ddl_applied: int = 0
    transactions_applied: int = 0
    transactions_rolled_back: int = 0
    rows_applied: int = 0
    rows_rolled_back: int = 0
    deletes_applied: int = 0
    rows_deleted: int = 0  # from the memtable (segments: at the next checkpoint)
    bytes_truncated: int = 0
    truncated_file: str | None = None
    truncated_at: int | None = None
    truncated_reason: str | None = None
    repaired: bool = False
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReplayState:
    manifest: Manifest
    catalog: dict[str, TableSchema]
    settings: Settings
    memtable: Memtable
    hidden_tables: set[str]
    last_lsn: int
    next_txn: int
    current_start_lsn: int | None
    report: RecoveryReport
    # The last LSN that ends a whole transaction or an auto-committed record: what a
    # snapshot may claim to hold (records past it belong to a transaction in progress).
    committed_lsn: int = 0
    committed_end: tuple[Path, int] | None = None  # the file and offset just past it
    last_commit_ns: int | None = None  # commit time of the last transaction replayed
    # DELETE records past the manifest's checkpoint LSN: they still apply to every
    # segment (a checkpoint rewrites the segments and drops them from this list)
    deletes: list[DeleteSpec] = field(default_factory=list)


def replay(
    db_dir: Path, database: str, *, repair: bool, cut_uncommitted: bool = False
) -> ReplayState:
    """Load the manifest and replay the WAL; cut a torn tail only if ``repair``.

    ``cut_uncommitted`` (a standby, whose WAL holds its primary's records verbatim and
    must go on with the same LSNs): records past the last commit are cut off too, so a
    segment whose apply was interrupted is applied again whole."""
    started = time.perf_counter()
    manifest = manifest_format.load(db_dir)
    scans, torn_header = _scan_files(db_dir, database, repair=repair)
    _check_identity(scans, manifest)
    report = RecoveryReport(database=database, checkpoint_lsn=manifest.checkpoint_lsn)
    report.files = [str(s.path.relative_to(db_dir)) for s in scans]
    _check_problems(scans, database, report, repair=repair)
    if torn_header:
        report.bytes_truncated += torn_header
        report.truncated_file = f"{wal.WAL_DIR}/{wal.CURRENT}"
        report.truncated_at, report.truncated_reason = 0, "file header cut short"
    _check_continuity(scans, manifest, db_dir)
    state = ReplayState(
        manifest=manifest,
        catalog={name: entry.schema.copy() for name, entry in manifest.tables.items()},
        settings=manifest.settings,
        memtable=Memtable(),
        hidden_tables=set(),
        last_lsn=manifest.checkpoint_lsn,
        next_txn=manifest.next_txn,
        current_start_lsn=_current_start(scans),
        report=report,
        committed_lsn=manifest.checkpoint_lsn,
    )
    _apply_records(scans, state, db_dir)
    if cut_uncommitted and repair and state.last_lsn > state.committed_lsn:
        _cut_uncommitted(scans, state)
    report.last_lsn = state.last_lsn
    report.needed = report.records_replayed > 0 or report.bytes_truncated > 0
    report.repaired = repair and report.bytes_truncated > 0
    report.seconds = time.perf_counter() - started
    return state


def _scan_files(db_dir: Path, database: str, *, repair: bool) -> tuple[list[FileScan], int]:
    scans = []
    torn_header = 0
    for path in wal.wal_files(db_dir / wal.WAL_DIR):
        data = path.read_bytes()
        try:
            scan = scan_bytes(data, path)
        except Corruption as exc:
            if path.name == wal.CURRENT and _header_is_torn(data, database):
                torn_header = len(data)
                if repair:
                    IO.remove(path)
                continue
            raise Corruption(str(exc), hint=REPAIR_HINT, path=str(path), offset=exc.offset).advise(
                Remedy.VERIFY_WAL, database
            ) from exc
        assert scan.header is not None
        if scan.header.database != database:
            raise Corruption(
                f"{path}: WAL belongs to database {scan.header.database!r}, not {database!r}",
                path=str(path),
                offset=0,
            )
        scans.append(scan)
    return scans, torn_header


def _check_identity(scans: list[FileScan], manifest: manifest_format.Manifest) -> None:
    """A WAL file of another database (or of another history of this one) is never
    replayed: its header's identity must be the manifest's, where both have one."""
    for scan in scans:
        header = scan.header
        if header is None or not header.uuid or not manifest.uuid:
            continue
        if header.uuid != manifest.uuid:
            raise Corruption(
                f"{scan.path}: WAL of database {header.uuid}, the manifest is of {manifest.uuid}",
                path=str(scan.path),
                offset=0,
            )


def _header_is_torn(data: bytes, database: str) -> bool:
    """Shorter than a whole header: the crash came while the file was being created."""
    return len(data) < wal.header_size(database)


def _check_problems(
    scans: list[FileScan], database: str, report: RecoveryReport, *, repair: bool
) -> None:
    for scan in scans:
        problem = scan.problem
        if problem is None:
            continue
        is_tail = scan.path.name == wal.CURRENT and problem.is_tail
        if not is_tail:
            if problem.valid_after:
                where = f"; valid records follow at offset {problem.next_valid_offset}"
            elif problem.kind == "corrupt":
                where = ""
            else:
                where = " in a file that was complete when it was rotated"
            raise Corruption(
                f"{scan.path}: corrupt WAL record at offset {problem.offset}: "
                f"{problem.reason}{where}",
                hint=REPAIR_HINT,
                path=str(scan.path),
                offset=problem.offset,
            ).advise(Remedy.VERIFY_WAL, database)
        report.bytes_truncated += scan.torn_bytes
        report.truncated_file = str(Path(wal.WAL_DIR) / scan.path.name)
        report.truncated_at = problem.offset
        report.truncated_reason = problem.reason
        if repair:
            wal.truncate_file(scan.path, scan.end_offset)


def _check_continuity(scans: list[FileScan], manifest: Manifest, db_dir: Path) -> None:
    """The WAL must hold every record after the checkpoint LSN, with no gap between files."""
    expected = manifest.checkpoint_lsn + 1
    for scan in scans:
        assert scan.header is not None
        start = scan.header.start_lsn
        if start > expected:
            raise WalGap(
                f"{scan.path}: WAL starts at LSN {start} but LSN {expected} is missing "
                f"(checkpoint LSN {manifest.checkpoint_lsn})",
                hint="records were lost; restore from a backup or repair the WAL",
                path=str(scan.path),
                offset=0,
            ).advise(Remedy.REPAIR_WAL, manifest.database)
        end = wal.next_lsn_after(scan.records[-1]) if scan.records else start
        expected = max(expected, end)


def _cut_uncommitted(scans: list[FileScan], state: ReplayState) -> None:
    current = next((s for s in scans if s.path.name == wal.CURRENT), None)
    if current is None or current.header is None:
        return
    if state.committed_end is not None and state.committed_end[0] == current.path:
        offset = state.committed_end[1]
    elif current.header.start_lsn > state.committed_lsn:
        offset = current.header.size
    else:
        return
    cut = current.end_offset - offset
    wal.truncate_file(current.path, offset)
    state.report.bytes_truncated += cut
    state.report.truncated_file = f"{wal.WAL_DIR}/{wal.CURRENT}"
    state.report.truncated_at = offset
    state.report.truncated_reason = "an interrupted apply of a shipped segment"
    state.last_lsn = state.committed_lsn


def _current_start(scans: list[FileScan]) -> int | None:
    for scan in scans:
        if scan.path.name == wal.CURRENT and scan.header is not None:
            return scan.header.start_lsn
    return None


def _apply_records(scans: list[FileScan], state: ReplayState, db_dir: Path) -> None:
    txns = Assembler()
    for scan, record in iter_records(scans):
        apply_record(state, txns, record, scan.path)
    roll_back(state, txns)


def apply_record(state: ReplayState, txns: Assembler, record: wal.Record, where: Path) -> None:
    """Replay one record onto ``state`` (what it does: ``engine/log/walkinds.py``); DATA waits in
    ``txns`` for its transaction's COMMIT. Recovery and a standby share it."""
    report = state.report
    report.records_scanned += 1
    if record.txn >= state.next_txn:
        state.next_txn = record.txn + 1
    if record.lsn <= state.manifest.checkpoint_lsn:
        return
    report.records_replayed += 1
    state.last_lsn = wal.next_lsn_after(record) - 1  # a GAP stands for its whole range
    try:
        walkinds.of(record).apply(state, txns, record)
        if walkinds.ends_unit(record):
            state.committed_lsn = state.last_lsn
            state.committed_end = (where, record.offset + record.size)
    except Corruption:
        raise
    except Exception as exc:  # a CRC-valid record that does not decode
        raise Corruption(
            f"{where}: WAL record LSN {record.lsn} at offset {record.offset} "
            f"does not decode ({exc})",
            hint=REPAIR_HINT,
            path=str(where),
            offset=record.offset,
        ).advise(Remedy.VERIFY_WAL, state.manifest.database) from exc


def roll_back(state: ReplayState, txns: Assembler) -> None:
    """Count the transactions that never committed (their DATA records are dropped)."""
    for txn in txns.open:
        state.report.transactions_rolled_back += 1
        state.report.rows_rolled_back += txn.rows
    txns.clear()
