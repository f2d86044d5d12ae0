"""The shipped log segment format (engine/replication/logsegment.py): a round trip keeps
every record byte for byte, any damage is refused naming the object, and the chain rules
catch a gap, an overlap, a foreign database, another epoch and another history."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import Corruption
from engine.log import wal
from engine.replication import logsegment

DB = str(uuid.uuid4())


def transaction(first_lsn: int, txn: int, payloads: list[bytes]) -> list[bytes]:
    records = [
        wal.encode_record(first_lsn + i, txn, wal.RecordType.DATA, p)
        for i, p in enumerate(payloads)
    ]
    commit = wal.encode_commit(len(payloads), 10 * len(payloads))
    records.append(wal.encode_record(first_lsn + len(payloads), txn, wal.RecordType.COMMIT, commit))
    return records


def segment(first_lsn: int = 5, previous: bytes = logsegment.NO_PREVIOUS, epoch: int = 1) -> bytes:
    records = transaction(first_lsn, 3, [b"a", b"bb"]) + transaction(first_lsn + 3, 4, [b"c"])
    return logsegment.encode(
        DB, epoch, records, rows=30, first_commit_ns=1, last_commit_ns=2, previous=previous
    )


def test_round_trip_keeps_every_record() -> None:
    data = segment()
    decoded = logsegment.decode(data, "s")
    h = decoded.header
    assert (h.uuid, h.epoch, h.first_lsn, h.last_lsn, h.records, h.rows) == (DB, 1, 5, 9, 5, 30)
    assert [r.lsn for r in decoded.records] == [5, 6, 7, 8, 9]
    assert [r.payload for r in decoded.records if r.type is wal.RecordType.DATA] == [
        b"a",
        b"bb",
        b"c",
    ]
    assert logsegment.parse_key(h.key) == (1, 5, 9)
    assert logsegment.parse_key("log/x.tslog") is None


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_flipped_byte_or_cut_is_refused(data: st.DataObject) -> None:
    good = segment()
    at = data.draw(st.integers(0, len(good) - 1))
    flipped = bytearray(good)
    flipped[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(Corruption, match="log segment obj"):
        logsegment.decode(bytes(flipped), "obj")
    cut = data.draw(st.integers(0, len(good) - 1))
    with pytest.raises(Corruption):
        logsegment.decode(good[:cut], "obj")


def test_a_segment_that_ends_inside_a_transaction_is_refused() -> None:
    records = transaction(1, 3, [b"a"])[:-1]  # no COMMIT
    data = logsegment.encode(DB, 1, records, rows=10, first_commit_ns=1, last_commit_ns=1,
                             previous=logsegment.NO_PREVIOUS)  # fmt: skip
    with pytest.raises(Corruption, match="inside a transaction"):
        logsegment.decode(data, "obj")


def test_the_chain_rules() -> None:
    first = logsegment.decode(segment(5), "a")
    second = logsegment.decode(segment(10, previous=first.digest), "b")
    ok = {"uuid": DB, "epoch": 1, "next_lsn": 10, "previous": first.digest}
    assert logsegment.chain_problem(second.header, **ok) is None
    assert "gap" in str(logsegment.chain_problem(second.header, **{**ok, "next_lsn": 8}))
    assert "overlap" in str(logsegment.chain_problem(second.header, **{**ok, "next_lsn": 12}))
    assert "database" in str(
        logsegment.chain_problem(second.header, **{**ok, "uuid": str(uuid.uuid4())})
    )
    assert "epoch" in str(logsegment.chain_problem(second.header, **{**ok, "epoch": 2}))
    other = logsegment.decode(segment(10, previous=bytes(range(32))), "c")
    assert "history" in str(logsegment.chain_problem(other.header, **ok))
