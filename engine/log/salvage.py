"""What a salvaging repair keeps of a damaged log: the record-level plan.

Given the valid records read around damage (``reader.Policy.SKIP_DAMAGED``), the
plan keeps every transaction that kept all its DATA records and its COMMIT
(``txn.Transaction.complete``) and every record that stands alone, drops the
rest (except the trailing uncommitted transaction, the normal rollback of an
interrupted write, which is not a loss), re-creates the schema change a kept
DATA record needs when its DDL record was lost, and numbers the result so that
every kept record keeps its LSN: a ``GAP`` record stands for each run of lost
LSNs, and a re-created schema change takes a lost LSN before the data that
needs it. Only when no lost LSN is free there are the records from that point
renumbered, and the plan says where. The file work (copies, the new
``current.wal``) is ``engine/db/walrepair.py``'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.log import wal, walkinds
from engine.log.txn import Assembler
from engine.log.wal import Record, RecordType
from engine.storage.schema import TableSchema, split_columns

SYNTHESIZED = -1  # the LSN of a re-created schema change until it is numbered


@dataclass
class Losses:
    """What the plan drops: transactions (ids) and the rows known to be in them."""

    transactions: list[int] = field(default_factory=list)
    rows: int = 0


def complete_transactions(records: list[Record], losses: Losses) -> list[Record]:
    """Records of transactions that kept every DATA record and their COMMIT, plus the
    records that stand alone (DDL, DELETE; a GAP is written anew where LSNs are missing)."""
    txns = Assembler()
    complete: set[int] = set()
    dropped = []
    for record in records:
        closed = txns.add(record)
        if closed is None:
            continue
        if closed.complete:
            complete.add(closed.txn)
        else:
            dropped.append(closed)
    dropped += txns.open[:-1]  # the last open one is an interrupted write's rollback
    for txn in dropped:
        losses.transactions.append(txn.txn)
        losses.rows += txn.rows
    losses.transactions.sort()
    return [r for r in records if _stands_alone(r) or r.txn in complete]


def _stands_alone(record: Record) -> bool:
    return walkinds.of(record).standalone and record.type is not RecordType.GAP


def with_schema_for(records: list[Record], catalog: dict[str, TableSchema]) -> list[Record]:
    """Insert DDL for tables and columns whose schema record was lost (LSN
    :data:`SYNTHESIZED`), starting from the checkpoint's ``catalog`` (changed in place)."""
    out: list[Record] = []
    for record in records:
        if record.type is RecordType.DDL:
            change = wal.decode_ddl(record.payload)
            if change.get("op") == "table":
                catalog[change["table"]] = TableSchema.from_json(change)
            elif change.get("op") == "drop_table":
                catalog.pop(change["table"], None)
        elif record.type is RecordType.DATA:
            table, rows = wal.decode_data(record.payload)
            tags, fields = split_columns(rows)
            current = catalog.get(table, TableSchema())
            grown = current.grown_by(table, tags, fields)
            if grown is not None:
                catalog[table] = grown
                payload = wal.encode_ddl({"op": "table", "table": table, **grown.to_json()})
                out.append(Record(SYNTHESIZED, 0, RecordType.DDL, payload, -1, 0))
        out.append(record)
    return out


def stable_lsns(records: list[Record], first: int) -> tuple[list[tuple[int, Record]], int | None]:
    """Each kept record with the LSN it is written at: its own, with a GAP record for each
    run of lost LSNs before it, and a lost LSN for a re-created schema change. Returns
    them and, if a re-created record found no lost LSN, where renumbering began."""
    out: list[tuple[int, Record]] = []
    expected, shift, renumbered_from = first, 0, None
    for index, record in enumerate(records):
        if record.lsn == SYNTHESIZED:  # take the next lost LSN before the next real record
            following = next((r.lsn for r in records[index + 1 :] if r.lsn >= 0), None)
            if following is not None and following + shift <= expected:
                shift += 1  # nothing lost here: from now on, every LSN moves up one
                renumbered_from = renumbered_from or expected
            out.append((expected, record))
            expected += 1
            continue
        lsn = record.lsn + shift
        if lsn > expected:
            gap = Record(expected, 0, RecordType.GAP, wal.encode_gap(lsn - 1), -1, 0)
            out.append((expected, gap))
        out.append((lsn, record))
        expected = lsn + 1
    return out, renumbered_from
