"""The one loop that reads WAL records out of bytes, with a named policy for damage.

Every reader of the log goes through :class:`Reader`: recovery and ``wal verify``
(a whole file, :attr:`Policy.TOLERATE_TORN_TAIL`), the replication source (the
live end of a file that is still being written, :attr:`Policy.STOP`), the log
segment reader (bytes that must be whole, :attr:`Policy.STOP`, then it refuses
any problem) and the salvaging repair (:attr:`Policy.SKIP_DAMAGED`, each damaged
range handed to a reporter), as LevelDB's ``log::Reader`` serves every caller
with a reporter and RocksDB's recovery modes name what a reader does at damage.

The byte format is ``engine/log/wal.py``'s; this module decides only where a
read stops and what it says about the bytes it did not take.

LSN rules, chosen by the caller:

* ``expected_lsn`` given: each record carries exactly the LSN after the previous
  one's (a ``GAP`` record stands for its whole range); anything else is damage.
* ``after_lsn`` given (salvage): each record's LSN is past the previous one's.
* neither: LSNs are not checked (the caller positioned the read itself).

With ``version`` given, a record type newer than the file's version is damage
(the version rule, ``wal.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from engine.crc import crc32c
from engine.log import wal
from engine.log.wal import RECORD_HEADER, RECORD_HEADER_SIZE, Record


class Policy(Enum):
    """What a read does at the first record that is not valid."""

    #: stop, and say whether the damage is a torn tail a crash leaves (nothing valid
    #: after it) or corruption (valid records follow, or a damaged length)
    TOLERATE_TORN_TAIL = "tolerate-torn-tail"
    #: stop and say why, without looking further (the live end of a file being written,
    #: or bytes the caller refuses whole at the first error)
    STOP = "stop"
    #: skip to the next valid record, hand the skipped range to the reporter, go on
    SKIP_DAMAGED = "skip-damaged"


@dataclass
class Problem:
    """Why reading stopped early, at ``offset``.

    ``kind``: ``short`` (the last record runs past the end of the file: a torn
    write), ``bad_tail`` (the last record is whole but fails its CRC: a torn
    page write or a flipped bit), ``corrupt`` (valid records follow, or the
    damage cannot come from a crash), ``invalid`` (not classified: the
    :attr:`Policy.STOP` read did not look further).
    """

    offset: int
    reason: str
    kind: str
    next_valid_offset: int | None = None

    @property
    def valid_after(self) -> bool:
        return self.next_valid_offset is not None

    @property
    def is_tail(self) -> bool:
        return self.kind in ("short", "bad_tail")


@dataclass(frozen=True)
class Damage:
    """A byte range a :attr:`Policy.SKIP_DAMAGED` read skipped: [offset, end)."""

    offset: int
    end: int
    reason: str


Reporter = Callable[[Damage], None]


class Reader:
    """Records of ``data`` from ``start``; iterate it, then look at :attr:`problem`
    and :attr:`end_offset` (just past the last record taken)."""

    def __init__(
        self,
        data: bytes,
        start: int,
        policy: Policy,
        *,
        expected_lsn: int | None = None,
        after_lsn: int | None = None,
        version: int | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.data = data
        self.start = start
        self.policy = policy
        self.expected_lsn = expected_lsn
        self.after_lsn = after_lsn
        self.version = version
        self.reporter = reporter
        self.problem: Problem | None = None
        self.end_offset = start

    def __iter__(self) -> Iterator[Record]:
        data, offset = self.data, self.start
        while offset < len(data):
            record, reason = wal.record_at(data, offset)
            if record is not None:
                reason = self._rule_broken(record)
            if not reason and record is not None:
                yield record
                offset += record.size
                self.end_offset = offset
                self._advance(record)
                continue
            if self.policy is Policy.SKIP_DAMAGED:
                offset = self._skip(offset, reason)
                continue
            self.problem = self._problem(offset, reason)
            return

    def _rule_broken(self, record: Record) -> str:
        if self.expected_lsn is not None and record.lsn != self.expected_lsn:
            return f"LSN {record.lsn} where {self.expected_lsn} was expected"
        if self.after_lsn is not None and record.lsn <= self.after_lsn:
            return "LSN out of order"
        if self.version is not None and wal.introduced_in(record.type) > self.version:
            return f"a {record.type.name} record in a version {self.version} file"
        return ""

    def _advance(self, record: Record) -> None:
        if self.expected_lsn is not None:
            self.expected_lsn = wal.next_lsn_after(record)
        if self.after_lsn is not None:
            self.after_lsn = record.lsn

    def _skip(self, offset: int, reason: str) -> int:
        floor = self.after_lsn if self.after_lsn is not None else -1
        following = find_valid_after(self.data, offset + 1, floor)
        end = len(self.data) if following is None else following
        if self.reporter is not None:
            self.reporter(Damage(offset, end, reason))
        return end

    def _problem(self, offset: int, reason: str) -> Problem:
        if self.policy is Policy.STOP:
            return Problem(offset, reason, "invalid")
        floor = (self.expected_lsn if self.expected_lsn is not None else 0) - 1
        return classify(self.data, offset, reason, floor)


def find_valid_after(data: bytes, start: int, min_lsn: int) -> int | None:
    """The offset of the first valid record after ``start`` whose LSN is past ``min_lsn``."""
    for offset in range(start, len(data) - RECORD_HEADER_SIZE + 1):
        _crc, length, lsn, _txn, rtype, flags, reserved = RECORD_HEADER.unpack_from(data, offset)
        if rtype not in wal.RECORD_TYPES or flags or reserved or lsn <= min_lsn:
            continue
        if offset + RECORD_HEADER_SIZE + length > len(data):
            continue
        record, _ = wal.record_at(data, offset)
        if record is not None:
            return offset
    return None


def classify(data: bytes, offset: int, reason: str, min_lsn: int) -> Problem:
    """A torn tail (nothing valid past ``offset``, a length that fits the damage) or
    corruption."""
    after = find_valid_after(data, offset + 1, min_lsn)
    if after is not None:
        return Problem(offset, reason, "corrupt", after)
    if offset + RECORD_HEADER_SIZE > len(data):
        return Problem(offset, reason, "short")
    if _length_is_damaged(data, offset):
        return Problem(
            offset, "length field damaged (the record verifies with the true length)", "corrupt"
        )
    _crc, length, *_ = RECORD_HEADER.unpack_from(data, offset)
    kind = "short" if offset + RECORD_HEADER_SIZE + length > len(data) else "bad_tail"
    return Problem(offset, reason, kind)


def _length_is_damaged(data: bytes, offset: int) -> bool:
    """The record verifies if its length is taken to end at the end of the file."""
    true_length = len(data) - offset - RECORD_HEADER_SIZE
    stored_crc, stored_length, *_ = RECORD_HEADER.unpack_from(data, offset)
    if true_length == stored_length:
        return False
    head = bytearray(data[offset : offset + RECORD_HEADER_SIZE])
    struct.pack_into("<I", head, 4, true_length)
    crc = crc32c(data[offset + RECORD_HEADER_SIZE :], crc32c(bytes(head[4:])))
    return bool(crc == stored_crc)


# -- whole files ----------------------------------------------------------------------


@dataclass
class FileScan:
    """One WAL file read whole under :attr:`Policy.TOLERATE_TORN_TAIL`."""

    path: Path
    header: wal.WalHeader | None
    records: list[Record] = field(default_factory=list)
    file_size: int = 0
    end_offset: int = 0
    problem: Problem | None = None

    @property
    def torn_bytes(self) -> int:
        """Bytes past the last valid record when they look like a torn tail."""
        if self.problem is None or not self.problem.is_tail:
            return 0
        return self.file_size - self.end_offset


def scan_bytes(data: bytes, path: Path) -> FileScan:
    """Every valid record of one WAL file's bytes, up to the first invalid one (classified
    as a torn tail or corruption). Raises :class:`~engine.errors.Corruption` for a header
    that does not read."""
    header = wal.parse_file_header(data, path)
    reader = Reader(
        data,
        header.size,
        Policy.TOLERATE_TORN_TAIL,
        expected_lsn=header.start_lsn,
        version=header.version,
    )
    records = list(reader)
    return FileScan(path, header, records, len(data), reader.end_offset, reader.problem)


def scan_file(path: Path) -> FileScan:
    return scan_bytes(path.read_bytes(), path)


def iter_records(scans: list[FileScan]) -> Iterator[tuple[FileScan, Record]]:
    for scan in scans:
        for record in scan.records:
            yield scan, record
