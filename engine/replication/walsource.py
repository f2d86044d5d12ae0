"""Committed records read back from a primary's WAL files, for shipping.

The shipper asks for the records after an LSN. They are read from
``checkpoint.wal`` then ``current.wal`` (a checkpoint keeps both while a replica
needs them), up to the last record that ends a transaction (a COMMIT, or an
auto-committed DDL or GAP record), so a segment never holds half a transaction.
Records of a transaction that never committed (its writer crashed) are shipped
as they are: the standby's replay rolls them back exactly as the primary's did.

Only what is on stable storage is shipped: the files read are fsynced first (an
fsync of any descriptor flushes the file, whichever process wrote it), so a
record the primary could still lose to a power cut never reaches a replica.

A cursor (file inode, offset, next LSN) makes the next read start where the last
ended; rotation renames a file without changing its inode.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError
from engine.io.fileio import IO
from engine.log import wal, walkinds
from engine.log.reader import Policy, Reader, scan_file
from engine.log.txn import commit_of


class WalGone(EngineError):
    """The WAL no longer holds the record the shipper needs (deleted past the hold
    limits, or never there): the replica needs a reseed from a snapshot."""


@dataclass(frozen=True)
class Batch:
    records: list[bytes]
    first_lsn: int
    last_lsn: int
    rows: int
    first_commit_ns: int
    last_commit_ns: int

    @property
    def size(self) -> int:
        return sum(len(r) for r in self.records)


@dataclass
class _Cursor:
    inode: int
    offset: int
    next_lsn: int


class WalSource:
    def __init__(self, db_dir: Path) -> None:
        self.wal_dir = db_dir / wal.WAL_DIR
        self._cursor: _Cursor | None = None

    def read(self, next_lsn: int, max_bytes: int) -> Batch | None:
        """Whole transactions from ``next_lsn`` on, about ``max_bytes`` of them (at least
        one); None when nothing committed is past ``next_lsn - 1``. Raises
        :class:`WalGone` when the WAL starts after ``next_lsn``."""
        files = self._files()
        start = self._locate(files, next_lsn)
        if start is None:
            return None
        records: list[bytes] = []
        rows, times = 0, []
        taken, size, cursor = 0, 0, None
        index, offset = start
        for path, inode in files[index:]:
            offset, data = _read_from(path, offset)
            # the first invalid record is the end, or a record still being written
            for record in Reader(data, 0, Policy.STOP):
                at = record.offset + record.size
                if record.lsn < next_lsn:
                    continue
                records.append(data[record.offset : at])
                size += record.size
                commit = commit_of(record)
                if commit is not None:
                    rows += commit.rows
                    times.append(commit.time_ns or 0)
                if walkinds.ends_unit(record):
                    taken = len(records)
                    cursor = _Cursor(inode, offset + at, wal.next_lsn_after(record))
                    if size >= max_bytes:
                        break
            else:
                offset = -1
                continue
            break
        if not taken or cursor is None:
            return None
        records = records[:taken]
        self._cursor = cursor
        first = wal.RECORD_HEADER.unpack_from(records[0])[2]
        return Batch(
            records=records,
            first_lsn=first,
            last_lsn=cursor.next_lsn - 1,
            rows=rows,
            first_commit_ns=times[0] if times else 0,
            last_commit_ns=times[-1] if times else 0,
        )

    def _files(self) -> list[tuple[Path, int]]:
        files = []
        for path in wal.wal_files(self.wal_dir):
            try:
                files.append((path, path.stat().st_ino))
            except FileNotFoundError:
                continue
        return files

    def _locate(self, files: list[tuple[Path, int]], next_lsn: int) -> tuple[int, int] | None:
        """(index into ``files``, byte offset) of the record ``next_lsn``; None when the
        WAL ends before it."""
        cursor = self._cursor
        if cursor is not None and cursor.next_lsn == next_lsn:
            for index, (_path, inode) in enumerate(files):
                if inode == cursor.inode:
                    return index, cursor.offset
        earliest = None
        for index, (path, _inode) in enumerate(files):
            try:
                scan = scan_file(path)
            except FileNotFoundError:
                continue
            assert scan.header is not None
            if earliest is None:
                earliest = scan.header.start_lsn
            for record in scan.records:
                if record.lsn <= next_lsn < wal.next_lsn_after(record):
                    return index, record.offset
        if earliest is None or earliest > next_lsn:
            raise WalGone(f"the WAL starts after LSN {next_lsn}, which a replica still needs")
        return None


def _read_from(path: Path, offset: int) -> tuple[int, bytes]:
    """(offset, the file's bytes from it); offset -1: its first record. Fsynced first."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0, b""
    try:
        size = os.fstat(fd).st_size
        IO.fsync_fd(fd, path, size)
        if offset < 0:
            head = os.pread(fd, 64 * 1024, 0)
            offset = wal.parse_file_header(head, path).size
        chunks, at = [], offset
        while at < size:
            chunk = os.pread(fd, min(size - at, 16 << 20), at)
            if not chunk:
                break
            chunks.append(chunk)
            at += len(chunk)
        return offset, b"".join(chunks)
    finally:
        os.close(fd)
