"""Transactions assembled from the log: the one place DATA records meet their COMMIT.

A transaction is the ``DATA`` records carrying its id, closed by one ``COMMIT``
whose payload names how many ``DATA`` records it needs (``wal.py``). It is
*complete* when exactly that many arrived: recovery and a standby apply only a
complete transaction, ``wal verify`` reports any other, and the salvaging repair
keeps only complete ones. A transaction with no ``COMMIT`` yet is *open*; at the
end of the log the last open one is the normal rollback of an interrupted write.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.arrowmods import pa
from engine.log import wal
from engine.log.wal import Record, RecordType


@dataclass(frozen=True)
class Commit:
    """What a ``COMMIT`` record says."""

    txn: int
    data_records: int
    rows: int
    time_ns: int | None  # None in a version 1 record


def commit_of(record: Record) -> Commit | None:
    """The commit ``record`` is, or None for any other record type. Raises on a COMMIT
    payload that does not decode."""
    if record.type is not RecordType.COMMIT:
        return None
    data_records, rows = wal.decode_commit(record.payload)
    return Commit(record.txn, data_records, rows, wal.commit_time(record.payload))


def data_table(record: Record) -> str | None:
    """The table a ``DATA`` record writes to (None for other types)."""
    return wal.data_table_name(record.payload) if record.type is RecordType.DATA else None


@dataclass
class Transaction:
    txn: int
    data: list[Record] = field(default_factory=list)
    commit: Record | None = None

    @property
    def committed(self) -> Commit | None:
        return None if self.commit is None else commit_of(self.commit)

    @property
    def complete(self) -> bool:
        """Committed with every DATA record its COMMIT names (raises on a COMMIT payload
        that does not decode)."""
        commit = self.committed
        return commit is not None and commit.data_records == len(self.data)

    @property
    def rows(self) -> int:
        """Rows the COMMIT names, or, with no COMMIT, rows in the DATA records that decode."""
        commit = self.committed
        return commit.rows if commit is not None else sum(_rows(r) for r in self.data)

    def batches(self) -> list[tuple[str, pa.Table]]:
        return [wal.decode_data(r.payload) for r in self.data]


class Assembler:
    """Feed it records in log order; each COMMIT hands back the transaction it closes."""

    def __init__(self) -> None:
        self._open: dict[int, Transaction] = {}  # in order of each one's first record

    def add(self, record: Record) -> Transaction | None:
        """Take a DATA record (None) or a COMMIT (the transaction it closes, complete or
        not); other record types are not part of a transaction (None)."""
        if record.type is RecordType.DATA:
            self._open.setdefault(record.txn, Transaction(record.txn)).data.append(record)
            return None
        if record.type is RecordType.COMMIT:
            closed = self._open.pop(record.txn, None) or Transaction(record.txn)
            closed.commit = record
            return closed
        return None

    @property
    def open(self) -> list[Transaction]:
        """Transactions with DATA records and no COMMIT yet, oldest first."""
        return list(self._open.values())

    def clear(self) -> None:
        self._open.clear()


def _rows(record: Record) -> int:
    try:
        return int(wal.decode_data(record.payload)[1].num_rows)
    except Exception:  # a record of a damaged log: its rows are not known
        return 0
