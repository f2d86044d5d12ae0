"""The write-ahead log: file format, record codecs and the writer (the read loop: reader.py).

Files
-----
Per database, ``wal/current.wal`` receives every record. A checkpoint renames
it to ``wal/checkpoint.wal`` and starts a new ``current.wal``; once the
checkpoint's manifest is durable, ``checkpoint.wal`` is deleted.

File header (all integers little-endian), version 3::

    offset size  field
    0      8     magic       b"TSADWAL\\n"
    8      2     version     u16, 3
    10     2     flags       u16, 0
    12     8     start_lsn   u64, the LSN the first record of this file may carry
    20     16    uuid        the database's identity (16 zero bytes: not known, a
                             database made before 0.3 whose manifest has none yet)
    36     8     epoch       u64, the epoch of its history (a promotion starts N+1)
    44     2     name_len    u16
    46     n     name        database name, UTF-8
    46+n   4     header_crc  u32, CRC32C (Castagnoli) of bytes [0, 46+n)

Version 1 files (before 0.3: no ``uuid`` and ``epoch``, ``name_len`` at offset
20) and version 2 files (0.3: the same header as version 3) are still read;
every file this version starts is version 3.

Version rule: a record type may appear only in files of at least the version
that introduced it (``DELETE``: 3). A reader meets a newer type only in a
file whose header version it refuses by name ("WAL format version N is not
supported"), never as an "unknown record type" it would take for damage; a
type in a file older than it is damage. So a writer appending to an older
file starts a new one (a checkpoint rotates the WAL) before its first record
of a newer type.

Records follow the header back to back, with no padding::

    offset size  field
    0      4     crc       u32, CRC32C of bytes [4, 28+length): the rest of the
                           header and the payload
    4      4     length    u32, payload bytes (at most 1 GiB)
    8      8     lsn       u64, log sequence number: the previous record's + 1
    16     8     txn       u64, transaction id (0 for auto-committed records)
    24     1     type      u8, see below
    25     1     flags     u8, 0
    26     2     reserved  u16, 0
    28     len   payload

Record types:

* ``DATA`` (1): rows for one table in one transaction. Payload: u16 table
  name length, the name (UTF-8), then a zstd frame holding an Arrow IPC
  stream of the rows (column ``ts`` then tags then fields).
* ``COMMIT`` (2): the transaction ``txn`` is committed. Payload: u32 number
  of ``DATA`` records of the transaction, u64 rows in them, and (since
  version 2 files; 12-byte payloads of version 1 have none) i64 commit time,
  ns since the Unix epoch, which point-in-time restore goes by. Recovery
  applies a transaction only if it found exactly that many ``DATA`` records,
  so a salvaged WAL that lost a record mid-transaction never applies half of it.
* ``DDL`` (3): an auto-committed catalog or settings change; payload is a JSON
  object (``{"op": "table", "table": ..., "tags": [...], "fields": {...}}``,
  ``{"op": "drop_table", "table": ...}``, ``{"op": "settings", ...}``).
* ``GAP`` (4, version 2 files only): the records from this one's LSN to the
  payload's u64 *last lost LSN* were lost to damage (``wal repair --salvage``
  writes it, so every kept record keeps its LSN: replicas address records by
  LSN). The next record carries last lost LSN + 1. Nothing is applied for it.

A batch of rows is written as its ``DATA`` records followed by one
``COMMIT``, all in a single ``write()``. Recovery applies a transaction only
when its ``COMMIT`` is found; ``DATA`` records without one are rolled back.

Worked example: one row to table ``cpu`` in transaction 7 at LSN 42 gives a
``DATA`` record (28 header bytes + 2 + 3 + the zstd frame) followed by
``COMMIT`` (48 bytes: crc, length 20, lsn 43, txn 7, type 2, then the payload
``01 00 00 00`` ``01 00 00 00 00 00 00 00`` and eight bytes of commit time:
one DATA record, one row).

What a crash leaves
-------------------
A crash mid-``write()`` leaves a prefix of the batch: the last record is cut
short (its length runs past the end of the file) or, after a torn page write,
complete in length but failing its CRC. Either way nothing valid follows it:
that is a *torn tail*, cut off at the next open and reported (``wal verify``
flags the second kind, which a flipped bit also produces). An invalid record
followed by a valid one cannot come from a crash: it is *corruption*, and so
is a last record whose bytes verify once its length field is corrected to end
at the end of the file (a damaged length, not a short write). The database
refuses to open on corruption until ``tsadmin wal repair`` has run.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import zstandard

from engine.arrowmods import ipc, pa
from engine.crc import crc32c
from engine.errors import Corruption, EngineError, InvalidArgument
from engine.io.fileio import IO, AppendFile

MAGIC = b"TSADWAL\n"
VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
FILE_HEADER_FIXED = struct.Struct("<8sHHQ")  # magic, version, flags, start_lsn
IDENTITY = struct.Struct("<16sQ")  # uuid, epoch (version 2)
NAME_LEN = struct.Struct("<H")
RECORD_HEADER = struct.Struct("<IIQQBBH")  # crc, length, lsn, txn, type, flags, reserved
RECORD_HEADER_SIZE = RECORD_HEADER.size  # 28
MAX_PAYLOAD = 1 << 30
COMMIT_PAYLOAD_V1 = struct.Struct("<IQ")  # data records, rows
COMMIT_PAYLOAD = struct.Struct("<IQq")  # data records, rows, commit time (ns)
WAL_DIR = "wal"
CURRENT = "current.wal"
CHECKPOINT = "checkpoint.wal"
ZSTD_LEVEL = 1


class RecordType(IntEnum):
    DATA = 1
    COMMIT = 2
    DDL = 3
    GAP = 4
    DELETE = 5


RECORD_TYPES = frozenset(int(t) for t in RecordType)  # the type bytes this build knows


# The version of each container format that introduced a record type newer than its
# version 1: the WAL file (this module) and the replication log segment
# (engine/replication/logsegment.py, which came after GAP and so holds it from its
# version 1). One table, so the two formats cannot disagree about a type.
_INTRODUCED_IN = {
    RecordType.GAP: {"wal": 2, "segment": 1},
    RecordType.DELETE: {"wal": 3, "segment": 2},
}


def introduced_in(rtype: RecordType, container: str = "wal") -> int:
    """The first version of ``container`` ("wal" or "segment") that may hold ``rtype``."""
    return _INTRODUCED_IN.get(rtype, {}).get(container, 1)


@dataclass(frozen=True)
class WalHeader:
    version: int
    start_lsn: int
    database: str
    size: int
    uuid: str = ""  # "" when not known (version 1, or a database without an identity yet)
    epoch: int = 0


@dataclass
class Record:
    lsn: int
    txn: int
    type: RecordType
    payload: bytes
    offset: int
    size: int


# -- encoding ------------------------------------------------------------------


def encode_file_header(database: str, start_lsn: int, uuid: str = "", epoch: int = 0) -> bytes:
    import uuid as uuids

    name = database.encode()
    raw_uuid = uuids.UUID(uuid).bytes if uuid else bytes(16)
    body = (
        FILE_HEADER_FIXED.pack(MAGIC, VERSION, 0, start_lsn)
        + IDENTITY.pack(raw_uuid, epoch)
        + NAME_LEN.pack(len(name))
        + name
    )
    return body + struct.pack("<I", crc32c(body))


def header_size(database: str) -> int:
    """The size of the header this version writes for ``database``."""
    return FILE_HEADER_FIXED.size + IDENTITY.size + NAME_LEN.size + len(database.encode()) + 4


def encode_record(lsn: int, txn: int, rtype: RecordType, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:  # the reader would take such a record for damage
        raise InvalidArgument(
            f"a WAL record of {len(payload):,} bytes is over the {MAX_PAYLOAD:,}-byte limit",
            hint="write the rows in smaller batches",
        )
    head = RECORD_HEADER.pack(0, len(payload), lsn, txn, int(rtype), 0, 0)
    crc = crc32c(payload, crc32c(head[4:]))
    return struct.pack("<I", crc) + head[4:] + payload


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_local, "cctx"):
        _local.cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        _local.dctx = zstandard.ZstdDecompressor()
    return _local.cctx  # type: ignore[no-any-return]


def _decompressor() -> zstandard.ZstdDecompressor:
    _compressor()
    return _local.dctx  # type: ignore[no-any-return]


def encode_commit(data_records: int, rows: int, time_ns: int | None = None) -> bytes:
    """A COMMIT payload; ``time_ns`` defaults to now."""
    return COMMIT_PAYLOAD.pack(data_records, rows, time.time_ns() if time_ns is None else time_ns)


def decode_commit(payload: bytes) -> tuple[int, int]:
    """(data records, rows) of a COMMIT payload (either version)."""
    if len(payload) == COMMIT_PAYLOAD_V1.size:
        records, rows = COMMIT_PAYLOAD_V1.unpack(payload)
    else:
        records, rows, _time = COMMIT_PAYLOAD.unpack(payload)
    return int(records), int(rows)


def encode_transaction(
    last_lsn: int, changes: list[dict[str, Any]], payloads: list[bytes], txn: int, rows: int
) -> tuple[bytes, int]:
    """One write's records (its DDL, its DATA, its COMMIT) after ``last_lsn``, and the LSN
    of the last."""
    lsn = last_lsn
    parts = []
    for change in changes:
        lsn += 1
        parts.append(encode_record(lsn, 0, RecordType.DDL, encode_ddl(change)))
    for payload in payloads:
        lsn += 1
        parts.append(encode_record(lsn, txn, RecordType.DATA, payload))
    if payloads:
        lsn += 1
        commit = encode_commit(len(payloads), rows)
        parts.append(encode_record(lsn, txn, RecordType.COMMIT, commit))
    return b"".join(parts), lsn


GAP_PAYLOAD = struct.Struct("<Q")  # the last lost LSN


def encode_gap(last_lost_lsn: int) -> bytes:
    return GAP_PAYLOAD.pack(last_lost_lsn)


def decode_gap(payload: bytes) -> int:
    """The last LSN a GAP record stands for."""
    return int(GAP_PAYLOAD.unpack(payload)[0])


def next_lsn_after(record: Record) -> int:
    """The LSN the record after ``record`` carries: the next one, or past a GAP's range."""
    if record.type is RecordType.GAP:
        try:
            return max(decode_gap(record.payload), record.lsn) + 1
        except struct.error:
            return record.lsn + 1
    return record.lsn + 1


def commit_time(payload: bytes) -> int | None:
    """A COMMIT's time (ns since the Unix epoch), None for a version 1 record."""
    if len(payload) == COMMIT_PAYLOAD_V1.size:
        return None
    return int(COMMIT_PAYLOAD.unpack(payload)[2])


def encode_data(table_name: str, rows: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    name = table_name.encode()
    frame = _compressor().compress(sink.getvalue().to_pybytes())
    return struct.pack("<H", len(name)) + name + frame


def decode_data(payload: bytes) -> tuple[str, pa.Table]:
    (name_len,) = struct.unpack_from("<H", payload)
    name = payload[2 : 2 + name_len].decode()
    raw = _decompressor().decompress(payload[2 + name_len :])
    with ipc.open_stream(pa.py_buffer(raw)) as reader:
        return name, reader.read_all()


def data_table_name(payload: bytes) -> str:
    (name_len,) = struct.unpack_from("<H", payload)
    return payload[2 : 2 + name_len].decode()


def encode_ddl(change: dict[str, Any]) -> bytes:
    return json.dumps(change, sort_keys=True).encode()


def decode_ddl(payload: bytes) -> dict[str, Any]:
    value = json.loads(payload)
    if not isinstance(value, dict):
        raise ValueError("DDL payload is not an object")
    return value


# a DELETE payload is a JSON object too (its fields: engine/storage/deletes.py)
encode_delete = encode_ddl
decode_delete = decode_ddl


# -- reading -------------------------------------------------------------------


def parse_file_header(data: bytes, path: Path) -> WalHeader:
    import uuid as uuids

    truncated = Corruption(f"{path}: WAL header is truncated", path=str(path), offset=0)
    if len(data) < FILE_HEADER_FIXED.size + NAME_LEN.size + 4:
        raise truncated
    magic, version, _flags, start_lsn = FILE_HEADER_FIXED.unpack_from(data)
    if magic != MAGIC:
        raise Corruption(f"{path}: not a tsadmin WAL file (bad magic)", path=str(path), offset=0)
    if version not in READABLE_VERSIONS:
        raise Corruption(
            f"{path}: WAL format version {version} is not supported (this build reads "
            f"{', '.join(map(str, READABLE_VERSIONS))})",
            path=str(path),
            offset=8,
        )
    at, uuid, epoch = FILE_HEADER_FIXED.size, "", 0
    if version >= 2:
        if len(data) < at + IDENTITY.size + NAME_LEN.size:
            raise truncated
        raw_uuid, epoch = IDENTITY.unpack_from(data, at)
        uuid = str(uuids.UUID(bytes=raw_uuid)) if any(raw_uuid) else ""
        at += IDENTITY.size
    (name_len,) = NAME_LEN.unpack_from(data, at)
    end = at + NAME_LEN.size + name_len
    if len(data) < end + 4:
        raise truncated
    (stored,) = struct.unpack_from("<I", data, end)
    if stored != crc32c(data[:end]):
        raise Corruption(f"{path}: WAL header checksum mismatch", path=str(path), offset=0)
    database = data[at + NAME_LEN.size : end].decode(errors="replace")
    return WalHeader(version, start_lsn, database, end + 4, uuid, int(epoch))


def record_at(data: bytes, offset: int) -> tuple[Record | None, str]:
    """Decode the record at ``offset`` or say why it is not valid."""
    if offset + RECORD_HEADER_SIZE > len(data):
        return None, "record header cut short by end of file"
    crc, length, lsn, txn, rtype, _flags, _res = RECORD_HEADER.unpack_from(data, offset)
    if length > MAX_PAYLOAD:
        return None, f"record length {length} is implausible"
    end = offset + RECORD_HEADER_SIZE + length
    if end > len(data):
        return None, "record cut short by end of file"
    actual = crc32c(memoryview(data)[offset + 4 : end])
    if actual != crc:
        return None, f"checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
    if rtype not in RECORD_TYPES:
        return None, f"unknown record type {rtype}"
    payload = bytes(data[offset + RECORD_HEADER_SIZE : end])
    record = Record(lsn, txn, RecordType(rtype), payload, offset, end - offset)
    return record, ""


def wal_files(wal_dir: Path) -> list[Path]:
    """The WAL files in replay order (checkpoint.wal before current.wal)."""
    return [p for p in (wal_dir / CHECKPOINT, wal_dir / CURRENT) if p.exists()]


# -- writing -------------------------------------------------------------------


class WalWriter:
    """Appends records to ``current.wal``; the caller decides when to fsync."""

    def __init__(
        self,
        path: Path,
        database: str,
        start_lsn: int,
        *,
        create: bool,
        uuid: str = "",
        epoch: int = 0,
    ) -> None:
        self.path = path
        self.database = database
        self.start_lsn = start_lsn
        self._file: AppendFile = IO.open_append(path, "wal.append", create=create)
        self.version = VERSION if create else _file_version(path)
        if create:
            self._file.write(encode_file_header(database, start_lsn, uuid, epoch))
            self._file.fsync()
            IO.fsync_dir(path.parent)

    def accepts(self, rtype: RecordType) -> bool:
        """May a record of ``rtype`` go into this file (the version rule)?"""
        return introduced_in(rtype) <= self.version

    @property
    def size(self) -> int:
        return self._file.size

    def append(self, data: bytes) -> None:
        self._file.write(data)

    def fsync(self) -> None:
        self._file.fsync()

    def cut_back(self, size: int) -> None:
        """Best effort: drop what was appended past ``size`` (a record whose fsync failed)."""
        try:
            self._file.truncate(size)
            self._file.fsync()
        except EngineError:
            pass  # the database is broken already; recovery sees an unacknowledged tail

    def close(self) -> None:
        self._file.close()


def _file_version(path: Path) -> int:
    with path.open("rb") as handle:
        head = handle.read(FILE_HEADER_FIXED.size)
    if len(head) < FILE_HEADER_FIXED.size:
        return VERSION  # a header torn at creation is rewritten by recovery
    return int(FILE_HEADER_FIXED.unpack(head)[1])


def truncate_file(path: Path, size: int) -> None:
    """Cut a WAL file back to ``size`` bytes (a torn tail) durably."""
    out = IO.open_append(path, "wal.truncate")
    try:
        out.truncate(size)
        out.fsync()
    finally:
        out.close()
