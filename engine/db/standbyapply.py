"""A standby applies its primary's shipped records: appended to its own WAL verbatim
(same LSNs, so the standby's log is the primary's), fsynced, then replayed onto the
open database exactly as recovery replays them (``recovery.apply_record``)."""

from __future__ import annotations

from engine.db.checkpointing import Checkpoints
from engine.db.core import Core, copy_manifest
from engine.db.recovery import RecoveryReport, ReplayState, apply_record, roll_back
from engine.errors import InvalidArgument
from engine.log import wal
from engine.log.txn import Assembler
from engine.storage import deletes


def apply_shipped(core: Core, checkpoints: Checkpoints, records: list[wal.Record]) -> int:
    """Append and apply the records past our last LSN; returns the rows committed."""
    if core.role != "standby":
        raise InvalidArgument(f"database {core.name} is not a standby")
    checkpoints.ensure_wal_accepts({r.type for r in records})
    with core.write_lock:
        fresh = [r for r in records if wal.next_lsn_after(r) - 1 > core.last_lsn]
        if not fresh:
            return 0
        if fresh[0].lsn > core.last_lsn + 1:
            raise InvalidArgument(
                f"database {core.name}: shipped records start at LSN {fresh[0].lsn}, "
                f"after {core.last_lsn + 1}"
            )
        core.append(b"".join(wal.encode_record(r.lsn, r.txn, r.type, r.payload) for r in fresh))
        state = _replay_state(core)
        known = len(core.deletes)
        txns = Assembler()
        for record in fresh:
            apply_record(state, txns, record, core.wal.path if core.wal else core.dir)
        roll_back(state, txns)
        for table in core.hidden:
            for frozen in core.immutables:
                frozen.drop(table)
        for spec in core.deletes[known:]:
            for frozen in core.immutables:
                deletes.apply_to_memtable(frozen, spec, core.settings.precision)
        core.settings, core.last_lsn, core.next_txn = (
            state.settings,
            state.last_lsn,
            state.next_txn,
        )
        core.last_commit_ns = state.last_commit_ns or core.last_commit_ns
        lsn = core.last_lsn
    core.wait_durable(lsn)
    return state.report.rows_applied


def _replay_state(core: Core) -> ReplayState:
    """The open database as a replay's state: applying a record changes it in place."""
    return ReplayState(
        manifest=core.manifest,
        catalog=core.catalog,
        settings=core.settings,
        memtable=core.memtable,
        hidden_tables=core.hidden,
        last_lsn=core.last_lsn,
        next_txn=core.next_txn,
        current_start_lsn=None,
        report=RecoveryReport(core.name),
        committed_lsn=core.last_lsn,
        deletes=core.deletes,
    )


def follow_epoch(core: Core, epoch: int) -> None:
    """The history the standby follows went on in ``epoch`` (installed at the next
    checkpoint, with which the WAL's header says so too)."""
    with core.write_lock:
        manifest = copy_manifest(core.manifest)
        manifest.epoch = epoch
        core.manifest = manifest
