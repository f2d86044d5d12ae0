"""The WAL format: round trip, torn tails at every offset, corruption found with its offset."""

from __future__ import annotations

import struct
from pathlib import Path

import crc32c
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Corruption, crc
from engine.log import wal
from engine.log.reader import scan_file


def write_file(path: Path, records: list[bytes], start_lsn: int = 1) -> None:
    path.write_bytes(wal.encode_file_header("db", start_lsn) + b"".join(records))


def sample_records(n: int, start_lsn: int = 1) -> list[bytes]:
    rows = pa.table({"ts": pa.array([1, 2], pa.int64()), "v": [1.0, 2.0]})
    out = []
    for i in range(n):
        lsn = start_lsn + i
        if i % 2 == 0:
            out.append(
                wal.encode_record(
                    lsn, 1 + i // 2, wal.RecordType.DATA, wal.encode_data("cpu", rows)
                )
            )
        else:
            commit = wal.encode_commit(1, 2)
            out.append(wal.encode_record(lsn, 1 + i // 2, wal.RecordType.COMMIT, commit))
    return out


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "current.wal"
    write_file(path, sample_records(6, start_lsn=10), start_lsn=10)
    scan = scan_file(path)
    assert scan.problem is None
    assert [r.lsn for r in scan.records] == list(range(10, 16))
    assert scan.header is not None and scan.header.database == "db"
    name, rows = wal.decode_data(scan.records[0].payload)
    assert name == "cpu" and rows.column("v").to_pylist() == [1.0, 2.0]


def test_commit_record_matches_the_worked_example() -> None:
    stamp = 1_732_400_000_123_456_789
    record = wal.encode_record(43, 7, wal.RecordType.COMMIT, wal.encode_commit(1, 1, stamp))
    assert len(record) == 48
    assert record[28:40] == bytes.fromhex("010000000100000000000000")
    assert wal.decode_commit(record[28:]) == (1, 1) and wal.commit_time(record[28:]) == stamp
    old = bytes.fromhex("010000000100000000000000")  # a version 1 COMMIT: no time
    assert wal.decode_commit(old) == (1, 1) and wal.commit_time(old) is None
    assert wal.decode_commit(record[28:]) == (1, 1)


def test_damaged_length_of_the_last_record_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    records = sample_records(4)
    data = bytearray(wal.encode_file_header("db", 1) + b"".join(records))
    last = len(data) - len(records[-1])
    data[last + 4 + 2] ^= 0x01  # length field, so the record seems to run past the end
    path = tmp_path / "current.wal"
    path.write_bytes(bytes(data))
    scan = scan_file(path)
    assert scan.problem is not None and scan.problem.kind == "corrupt"
    assert "length" in scan.problem.reason


def test_whole_last_record_with_bad_crc_is_a_bad_tail(tmp_path: Path) -> None:
    records = sample_records(4)
    data = bytearray(wal.encode_file_header("db", 1) + b"".join(records))
    data[-1] ^= 0x40
    path = tmp_path / "current.wal"
    path.write_bytes(bytes(data))
    scan = scan_file(path)
    assert scan.problem is not None and scan.problem.kind == "bad_tail"


def test_last_record_cut_at_every_offset_is_a_torn_tail(tmp_path: Path) -> None:
    records = sample_records(4)
    whole = wal.encode_file_header("db", 1) + b"".join(records)
    last_start = len(whole) - len(records[-1])
    prev_start = last_start - len(records[-2])
    path = tmp_path / "current.wal"
    for cut in range(prev_start + 1, len(whole)):
        path.write_bytes(whole[:cut])
        scan = scan_file(path)
        expected_end = prev_start if cut < last_start else last_start
        assert scan.end_offset == expected_end, cut
        if cut == last_start:  # ends on a record boundary: a clean file
            assert scan.problem is None
            continue
        assert scan.problem is not None and scan.problem.kind == "short", cut
        assert scan.torn_bytes == cut - expected_end


def test_flipped_byte_in_a_middle_record_is_corruption(tmp_path: Path) -> None:
    records = sample_records(6)
    data = bytearray(wal.encode_file_header("db", 1) + b"".join(records))
    second = len(wal.encode_file_header("db", 1)) + len(records[0])
    data[second + 10] ^= 0x10  # inside the LSN field of the 28-byte COMMIT
    path = tmp_path / "current.wal"
    path.write_bytes(bytes(data))
    scan = scan_file(path)
    assert scan.problem is not None
    assert scan.problem.offset == second
    assert scan.problem.valid_after
    assert "checksum mismatch" in scan.problem.reason


def test_every_single_byte_flip_is_noticed(tmp_path: Path) -> None:
    """No flipped byte anywhere in a small WAL reads back as the same valid records."""
    records = sample_records(4)
    clean = wal.encode_file_header("db", 1) + b"".join(records)
    path = tmp_path / "current.wal"
    for offset in range(len(clean)):
        data = bytearray(clean)
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))
        try:
            scan = scan_file(path)
        except Corruption:
            continue
        assert scan.problem is not None, f"flip at {offset} went unnoticed"


def test_bad_magic_and_unknown_version_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "current.wal"
    path.write_bytes(b"NOTAWAL!" + bytes(40))
    with pytest.raises(Corruption, match="bad magic"):
        scan_file(path)
    # A version this build does not know, with a valid header CRC (as a newer tsadmin would
    # write it): the version check itself must refuse it, not the checksum.
    header = bytearray(wal.encode_file_header("db", 1))
    header[8] = 9
    body = bytes(header[:-4])
    path.write_bytes(body + struct.pack("<I", crc32c.crc32c(body)))
    with pytest.raises(Corruption, match="version 9 is not supported"):
        scan_file(path)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=4096), start=st.integers(0, 2**32 - 1))
def test_the_engines_crc32c_is_the_packages(data: bytes, start: int) -> None:
    """engine.crc loads the package's extension by its own route; the checksum (every
    WAL record's, every manifest's) must be the package's, bit for bit."""
    assert crc.crc32c(data, start) == crc32c.crc32c(data, start)
    assert crc.crc32c(memoryview(data)) == crc32c.crc32c(data)


def test_crc32c_check_value() -> None:
    assert crc.crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue's check value
