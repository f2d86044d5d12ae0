"""The shipped log segment: committed WAL records as a replica store keeps them.

A primary ships its committed records to each replica store as a chain of
segment objects; a standby applies them, a point-in-time restore replays them.
A segment holds whole transactions only (it is cut after a ``COMMIT`` or an
auto-committed record) and carries enough to detect, never skip, a gap, an
overlap, a foreign database, a diverged history or damage.

Object key, relative to the store's root for the database::

    log/<epoch, 10 digits>/<first LSN, 20 digits>-<last LSN, 20 digits>.tslog
    log/<epoch, 10 digits>/<first LSN, 20 digits>-<last LSN, 20 digits>.c.tslog

The second form is a *compacted* segment: a run of consecutive segments merged
into one object by the primary's store upkeep (``engine/replication``), so a
store holds few objects however often it was shipped to.

File (all integers little-endian)::

    offset size  field
    0      8     magic          b"TSADLOG\\n"
    8      2     version        u16, 1; or 2 when it holds a record type of WAL
                                version 3 (``DELETE``), so a reader older than that
                                refuses the segment by its version, never taking the
                                record for damage; a version 1 segment holding one
                                is damage; 3 for a compacted segment
    10     2     flags          u16, 0; bit 0 set: compacted (version 3)
    12     16    uuid           the database's identity
    28     8     epoch          u64, the history this segment belongs to
    36     8     first_lsn      u64
    44     8     last_lsn       u64, the last LSN covered (LSNs are contiguous; a GAP
                                record, see engine/log/wal.py, covers its whole range)
    52     4     records        u32, how many records follow
    56     8     rows           u64, rows in the DATA records
    64     8     first_commit   i64, ns since the epoch: the first commit's time
    72     8     last_commit    i64, ns: the last commit's time (a segment ends with one)
    80     32    previous       SHA-256 trailer of the segment before this one in the
                                chain (32 zero bytes: the first after a snapshot)
    112    4     header_crc     u32, CRC32C of bytes [0, 112)
    (compacted only)
    116    4     runs           u32, how many segments were merged (n >= 1)
    120    40*n  boundaries     per merged segment, in order: its last LSN (u64) and
                                the digest a segment continuing it links to (32 bytes)
    ...    ...   records        the WAL records verbatim (engine/log/wal.py encoding, each
                                with its own CRC32C and LSN)
    end-32 32    digest         SHA-256 of every byte before it

A reader checks the header CRC, the digest, every record's CRC, that the LSNs
run from ``first_lsn`` to ``last_lsn`` without a hole, and that the last
record commits; then the chain: a segment's ``previous`` must be the *link* of
the segment holding ``first_lsn - 1`` (or zeros right after a snapshot), and
its ``uuid`` and ``epoch`` those the reader follows. The link of an ordinary
segment is its digest; of a compacted one, the link of the last segment it
merged (its last boundary), so the segments around it chain as they did.
A reader positioned inside a compacted segment's range (it applied some of
the merged segments before they were merged) continues in it if its position
and link are one of the boundaries, skipping the records it has.
"""

from __future__ import annotations

import hashlib
import re
import struct
import uuid as uuids
from collections.abc import Callable
from dataclasses import dataclass

from engine.crc import crc32c
from engine.errors import Corruption
from engine.log import wal, walkinds
from engine.log.reader import Policy, Reader

MAGIC = b"TSADLOG\n"
VERSION = 2
COMPACTED_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
COMPACTED = 1  # flags bit 0
BOUNDARY = struct.Struct("<Q32s")
HEADER = struct.Struct("<8sHH16sQQQIQqq32s")
HEADER_SIZE = HEADER.size + 4  # + header_crc
DIGEST_SIZE = 32
NO_PREVIOUS = bytes(DIGEST_SIZE)
_KEY_RE = re.compile(r"log/([0-9]{10})/([0-9]{20})-([0-9]{20})(\.c)?\.tslog")


@dataclass(frozen=True)
class SegmentHeader:
    uuid: str
    epoch: int
    first_lsn: int
    last_lsn: int
    records: int
    rows: int
    first_commit_ns: int
    last_commit_ns: int
    previous: bytes

    @property
    def key(self) -> str:
        return object_key(self.epoch, self.first_lsn, self.last_lsn)


@dataclass(frozen=True)
class Segment:
    header: SegmentHeader
    records: list[wal.Record]
    digest: bytes
    # compacted: (last LSN, link) of every merged segment; empty for an ordinary one
    boundaries: tuple[tuple[int, bytes], ...] = ()

    @property
    def link(self) -> bytes:
        """What the segment continuing this one has as its ``previous``."""
        return self.boundaries[-1][1] if self.boundaries else self.digest

    def continues(self, applied: int, link: bytes) -> bool:
        """Whether a reader at ``applied`` whose last link is ``link`` may continue in
        this segment: it starts right after it with that link, or (compacted) one of
        the merged segments ended there with it."""
        if self.header.first_lsn == applied + 1:
            return self.header.previous == link
        return (applied, link) in self.boundaries


def object_key(epoch: int, first_lsn: int, last_lsn: int, *, compacted: bool = False) -> str:
    suffix = ".c.tslog" if compacted else ".tslog"
    return f"log/{epoch:010d}/{first_lsn:020d}-{last_lsn:020d}{suffix}"


def parse_key(key: str) -> tuple[int, int, int] | None:
    """(epoch, first LSN, last LSN) of a segment's key, None for any other key."""
    match = _KEY_RE.fullmatch(key)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def is_compacted_key(key: str) -> bool:
    return key.endswith(".c.tslog")


def encode(
    uuid: str,
    epoch: int,
    records: list[bytes],
    *,
    rows: int,
    first_commit_ns: int,
    last_commit_ns: int,
    previous: bytes,
    boundaries: list[tuple[int, bytes]] | None = None,
) -> bytes:
    """A segment of ``records`` (encoded WAL records, contiguous LSNs, whole transactions);
    with ``boundaries``, a compacted one (see the module docstring)."""
    if not records:
        raise ValueError("a log segment holds at least one record")
    first = wal.RECORD_HEADER.unpack_from(records[0])[2]
    tail = next(iter(Reader(records[-1], 0, Policy.STOP)))
    last = wal.next_lsn_after(tail) - 1
    types = {wal.RecordType(wal.RECORD_HEADER.unpack_from(r)[4]) for r in records}
    version = max((wal.introduced_in(t, "segment") for t in types), default=1)
    head = HEADER.pack(
        MAGIC,
        COMPACTED_VERSION if boundaries else version,
        COMPACTED if boundaries else 0,
        uuids.UUID(uuid).bytes,
        epoch,
        first,
        last,
        len(records),
        rows,
        first_commit_ns,
        last_commit_ns,
        previous,
    )
    table = b""
    if boundaries:
        table = struct.pack("<I", len(boundaries)) + b"".join(
            BOUNDARY.pack(lsn, link) for lsn, link in boundaries
        )
    body = head + struct.pack("<I", crc32c(head)) + table + b"".join(records)
    return body + hashlib.sha256(body).digest()


def merge(segments: list[Segment]) -> bytes:
    """One compacted segment holding ``segments`` (consecutive, each linked to the one
    before: the caller checked), with every boundary they carried."""
    first, last = segments[0].header, segments[-1].header
    boundaries: list[tuple[int, bytes]] = []
    for segment in segments:
        boundaries += segment.boundaries or [(segment.header.last_lsn, segment.digest)]
    return encode(
        first.uuid,
        first.epoch,
        [wal.encode_record(r.lsn, r.txn, r.type, r.payload) for s in segments for r in s.records],
        rows=sum(s.header.rows for s in segments),
        first_commit_ns=first.first_commit_ns,
        last_commit_ns=last.last_commit_ns,
        previous=first.previous,
        boundaries=boundaries,
    )


def decode(data: bytes, where: str) -> Segment:
    """Read and check one segment (see the module docstring); :class:`Corruption` names
    ``where`` (its object) and what is wrong."""

    def bad(why: str) -> Corruption:
        return Corruption(f"log segment {where}: {why}", path=where)

    if len(data) < HEADER_SIZE + DIGEST_SIZE:
        raise bad(f"{len(data)} bytes, shorter than a header and a digest")
    fields = HEADER.unpack_from(data)
    magic, version, flags, raw_uuid, epoch, first, last, count, rows, t0, t1, previous = fields
    if magic != MAGIC:
        raise bad("not a tsadmin log segment (bad magic)")
    (stored_crc,) = struct.unpack_from("<I", data, HEADER.size)
    if stored_crc != crc32c(data[: HEADER.size]):
        raise bad("header checksum mismatch")
    if version not in READABLE_VERSIONS:
        raise bad(
            f"version {version} is not supported (this build reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    digest = data[-DIGEST_SIZE:]
    if hashlib.sha256(data[:-DIGEST_SIZE]).digest() != digest:
        raise bad("digest mismatch: the object was altered or cut short")
    header = SegmentHeader(
        str(uuids.UUID(bytes=raw_uuid)), epoch, first, last, count, rows, t0, t1, previous
    )
    if (version == COMPACTED_VERSION) != bool(flags & COMPACTED):
        raise bad(f"version {version} with flags {flags:#x}")
    start, boundaries = HEADER_SIZE, tuple[tuple[int, bytes], ...]()
    if flags & COMPACTED:
        start, boundaries = _boundaries(data, header, bad)
    records = _records(data[start:-DIGEST_SIZE], header, bad, start)
    for record in records:
        if wal.introduced_in(record.type, "segment") > version:
            raise bad(f"a {record.type.name} record in a version {version} segment")
    return Segment(header, records, digest, boundaries)


def _boundaries(
    data: bytes, header: SegmentHeader, bad: Callable[[str], Corruption]
) -> tuple[int, tuple[tuple[int, bytes], ...]]:
    """(where the records start, the boundary table) of a compacted segment."""
    (count,) = struct.unpack_from("<I", data, HEADER_SIZE)
    end = HEADER_SIZE + 4 + count * BOUNDARY.size
    if count == 0 or end > len(data) - DIGEST_SIZE:
        raise bad(f"a boundary table of {count} entries does not fit")
    table = tuple(
        BOUNDARY.unpack_from(data, HEADER_SIZE + 4 + i * BOUNDARY.size) for i in range(count)
    )
    lsns = [lsn for lsn, _ in table]
    if lsns != sorted(set(lsns)) or lsns[0] < header.first_lsn or lsns[-1] != header.last_lsn:
        raise bad("its boundaries do not run in order inside its LSN range")
    return end, table


def _records(
    body: bytes, header: SegmentHeader, bad: Callable[[str], Corruption], start: int = HEADER_SIZE
) -> list[wal.Record]:
    reader = Reader(body, 0, Policy.STOP, expected_lsn=header.first_lsn)
    records = list(reader)
    if reader.problem is not None:
        raise bad(f"record at byte {start + reader.problem.offset}: {reader.problem.reason}")
    expected = wal.next_lsn_after(records[-1]) if records else header.first_lsn
    if len(records) != header.records or expected - 1 != header.last_lsn:
        raise bad(
            f"{len(records)} records up to LSN {expected - 1}, the header says "
            f"{header.records} up to {header.last_lsn}"
        )
    if records and not walkinds.ends_unit(records[-1]):
        raise bad("it ends inside a transaction")
    return records


def chain_problem(
    segment: SegmentHeader, *, uuid: str, epoch: int, next_lsn: int, previous: bytes
) -> str | None:
    """Why ``segment`` cannot come next for a reader at ``next_lsn`` of database ``uuid``
    in ``epoch`` whose last applied segment's digest is ``previous`` (None: it can)."""
    if segment.uuid != uuid:
        return f"it is of database {segment.uuid}, not {uuid}"
    if segment.epoch != epoch:
        return f"it is of epoch {segment.epoch}, not {epoch}"
    if segment.first_lsn > next_lsn:
        return f"LSNs {next_lsn} to {segment.first_lsn - 1} are missing (a gap)"
    if segment.first_lsn < next_lsn:
        return f"it starts at LSN {segment.first_lsn}, before {next_lsn} (an overlap)"
    if segment.previous != previous:
        return "its previous-segment digest does not match: another history"
    return None
