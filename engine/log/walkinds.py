"""What each WAL record type means: one registry, consulted by everything that reads the log.

The byte format of every type is specified in ``engine/log/wal.py``; this module says,
per type, how its payload decodes (``decode``: raises on a payload that does not),
what ``wal inspect`` shows of it (``describe``), what ``wal dump`` prints
(``content``), whether it stands alone (auto-committed: recovery, repair,
the shipper and point-in-time restore may cut the log right after it), and
how recovery and a standby apply it (``apply``). A new record type is one
:class:`Kind` here (and its encoding in ``wal.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.arrowmods import pa
from engine.log import wal
from engine.log.txn import Assembler
from engine.settings import Settings
from engine.storage import deletes
from engine.storage.memtable import Memtable
from engine.storage.schema import TableSchema


class ReplayCounts(Protocol):
    """The counters a replay keeps (``engine.db.recovery.RecoveryReport``)."""

    transactions_applied: int
    transactions_rolled_back: int
    rows_applied: int
    rows_rolled_back: int
    ddl_applied: int
    deletes_applied: int
    rows_deleted: int


class ReplayState(Protocol):
    """What applying a record changes (``engine.db.recovery.ReplayState``, the database
    layer's): this layer says what a record means, not how a database holds it."""

    catalog: dict[str, TableSchema]
    settings: Settings
    memtable: Memtable
    hidden_tables: set[str]
    last_commit_ns: int | None
    deletes: list[deletes.DeleteSpec]

    @property
    def report(self) -> ReplayCounts: ...


@dataclass(frozen=True)
class Description:
    table: str | None = None
    rows: int | None = None
    raw_bytes: int | None = None  # decoded size, when it differs from the payload's


@dataclass(frozen=True)
class Kind:
    type: wal.RecordType
    standalone: bool  # auto-committed: it ends a unit of the log on its own
    decode: Callable[[wal.Record], Any]
    describe: Callable[[wal.Record], Description]
    content: Callable[[wal.Record], Any]
    apply: Callable[[ReplayState, Assembler, wal.Record], None]


def of(record: wal.Record) -> Kind:
    return KINDS[record.type]


def ends_unit(record: wal.Record) -> bool:
    """After this record the log holds only whole transactions (a COMMIT, or a record
    that stands alone)."""
    return record.type is wal.RecordType.COMMIT or (of(record).standalone and record.txn == 0)


# -- DATA -----------------------------------------------------------------------------------


def _data_describe(record: wal.Record) -> Description:
    table, rows = wal.decode_data(record.payload)
    return Description(table, rows.num_rows, rows.nbytes)


def _data_apply(state: ReplayState, txns: Assembler, record: wal.Record) -> None:
    txns.add(record)


# -- COMMIT ---------------------------------------------------------------------------------


def _commit_content(record: wal.Record) -> dict[str, Any]:
    records, rows = wal.decode_commit(record.payload)
    return {"txn": record.txn, "data_records": records, "rows": rows}


def _commit_apply(state: ReplayState, txns: Assembler, commit: wal.Record) -> None:
    closed = txns.add(commit)
    assert closed is not None
    report = state.report
    if not closed.complete:  # records lost to a salvage: never apply half a transaction
        report.transactions_rolled_back += 1
        report.rows_rolled_back += closed.rows
        return
    decoded: list[tuple[str, pa.Table]] = closed.batches()
    for table, batch in decoded:
        if table not in state.catalog:
            raise ValueError(f"data for unknown table {table!r}")
        state.memtable.add(table, batch)
        report.rows_applied += batch.num_rows
    report.transactions_applied += 1
    state.last_commit_ns = wal.commit_time(commit.payload) or state.last_commit_ns


# -- DDL ------------------------------------------------------------------------------------


def _ddl_apply(state: ReplayState, txns: Assembler, record: wal.Record) -> None:
    apply_ddl(state, wal.decode_ddl(record.payload))
    state.report.ddl_applied += 1


def apply_ddl(state: ReplayState, change: dict[str, Any]) -> None:
    """Apply one logged catalog/settings change to the replay state."""
    op = change["op"]
    if op == "table":
        state.catalog[change["table"]] = TableSchema.from_json(change)
    elif op == "drop_table":
        state.catalog.pop(change["table"], None)
        state.memtable.drop(change["table"])
        state.hidden_tables.add(change["table"])
    elif op == "settings":
        state.settings = Settings.from_json(change["settings"])
    else:
        raise ValueError(f"unknown DDL op {op!r}")


# -- GAP ------------------------------------------------------------------------------------


def _gap_decode(record: wal.Record) -> int:
    last = wal.decode_gap(record.payload)
    if last < record.lsn:
        raise ValueError("a GAP record that ends before it starts")
    return last


def _nothing(state: ReplayState, txns: Assembler, record: wal.Record) -> None:
    """Lost to damage and salvaged around: nothing to apply."""


# -- DELETE ---------------------------------------------------------------------------------


def decode_delete(record: wal.Record) -> deletes.DeleteSpec:
    return deletes.DeleteSpec.from_json(wal.decode_delete(record.payload), record.lsn)


def _delete_apply(state: ReplayState, txns: Assembler, record: wal.Record) -> None:
    spec = decode_delete(record)
    state.report.rows_deleted += deletes.apply_to_memtable(
        state.memtable, spec, state.settings.precision
    )
    state.deletes.append(spec)
    state.report.deletes_applied += 1


KINDS: dict[wal.RecordType, Kind] = {
    kind.type: kind
    for kind in (
        Kind(
            wal.RecordType.DATA,
            standalone=False,
            decode=lambda r: wal.decode_data(r.payload),
            describe=_data_describe,
            content=lambda r: wal.decode_data(r.payload)[1],
            apply=_data_apply,
        ),
        Kind(
            wal.RecordType.COMMIT,
            standalone=False,
            decode=lambda r: wal.decode_commit(r.payload),
            describe=lambda r: Description(rows=wal.decode_commit(r.payload)[1]),
            content=_commit_content,
            apply=_commit_apply,
        ),
        Kind(
            wal.RecordType.DDL,
            standalone=True,
            decode=lambda r: wal.decode_ddl(r.payload),
            describe=lambda r: Description(table=wal.decode_ddl(r.payload).get("table")),
            content=lambda r: wal.decode_ddl(r.payload),
            apply=_ddl_apply,
        ),
        Kind(
            wal.RecordType.GAP,
            standalone=True,
            decode=_gap_decode,
            describe=lambda r: Description(),
            content=lambda r: {"lost_lsns": [r.lsn, wal.decode_gap(r.payload)]},
            apply=_nothing,
        ),
        Kind(
            wal.RecordType.DELETE,
            standalone=True,
            decode=decode_delete,
            describe=lambda r: Description(table=decode_delete(r).table or "*"),
            content=lambda r: decode_delete(r).to_json(),
            apply=_delete_apply,
        ),
    )
}
assert set(KINDS) == set(wal.RecordType), "every record type needs a Kind"
