"""Recovery on open: committed transactions only, torn tails cut, corruption refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import Corruption, Database
from engine.harness import workload
from engine.log import wal
from engine.log.reader import scan_bytes, scan_file
from engine.settings import WalLevel
from tests.conftest import new_db


def write_batches(db_dir: Path, n: int, rows: int = 3) -> None:
    db = Database.open(db_dir, db_dir.name, background=False)
    for i in range(n):
        db.write(workload.make_batch(i, rows))
    db.abandon()  # a crash after the last acknowledgement: no checkpoint


def present_batches(db_dir: Path) -> dict[int, int]:
    db = Database.open(db_dir, db_dir.name, readonly=True)
    counts: dict[int, int] = {}
    for table in workload.TABLES:
        if table in db.tables():
            for n in db.scan(table).column("batch").to_pylist():
                counts[n] = counts.get(n, 0) + 1
    return counts


def test_replay_restores_everything_acknowledged(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "t")
    write_batches(db_dir, 5)
    db = Database.open(db_dir, "t", background=False)
    assert db.recovery.transactions_applied == 5
    assert db.recovery.rows_applied == 5 * 3 * 2
    assert db.recovery.transactions_rolled_back == 0
    db.close()
    assert present_batches(db_dir) == {n: 6 for n in range(5)}


def test_last_transaction_cut_at_every_offset(data_dir: Path) -> None:
    """Each cut inside the last transaction: it is rolled back, the rest survives, the
    tail is truncated and reported."""
    db_dir = new_db(data_dir, "t")
    write_batches(db_dir, 3, rows=2)
    path = db_dir / "wal" / "current.wal"
    whole = path.read_bytes()
    scan = scan_bytes(whole, path)
    last_txn = scan.records[-1].txn
    txn_start = min(r.offset for r in scan.records if r.txn == last_txn)
    boundaries = {r.offset for r in scan.records}
    first_end = next(r.offset + r.size for r in scan.records if r.txn == last_txn)
    for cut in range(txn_start + 1, len(whole)):
        path.write_bytes(whole[:cut])
        db = Database.open(db_dir, "t", background=False)
        report = db.recovery
        assert report.transactions_applied == 2, cut
        # rolled back only if one whole record of the last transaction survived the cut
        assert report.transactions_rolled_back == (1 if cut >= first_end else 0), cut
        last_whole = max(b for b in boundaries | {len(whole)} if b <= cut)
        assert report.bytes_truncated == cut - last_whole, cut
        if report.bytes_truncated:
            assert report.truncated_file == "wal/current.wal"
        db.abandon()
        assert path.stat().st_size <= cut, "torn tail was not cut off"
        assert sorted(present_batches(db_dir)) == [0, 1], cut


def test_uncommitted_transaction_is_rolled_back_and_counted(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "t")
    write_batches(db_dir, 2)
    path = db_dir / "wal" / "current.wal"
    data = path.read_bytes()
    scan = scan_bytes(data, path)
    commit = scan.records[-1]
    assert commit.type is wal.RecordType.COMMIT
    path.write_bytes(data[: commit.offset])  # the DATA records stay whole, COMMIT gone
    db = Database.open(db_dir, "t", readonly=True)
    assert db.recovery.transactions_rolled_back == 1
    assert db.recovery.rows_rolled_back == 2 * 3
    assert db.recovery.bytes_truncated == 0
    assert sorted(present_batches(db_dir)) == [0]


def test_flipped_byte_mid_file_refuses_to_open(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    db_dir = new_db(data_dir, "t")
    write_batches(db_dir, 4)
    path = db_dir / "wal" / "current.wal"
    data = bytearray(path.read_bytes())
    victim = scan_bytes(bytes(data), path).records[3]
    data[victim.offset + 30] ^= 0xFF
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(Corruption) as info:
        Database.open(db_dir, "t")
    assert info.value.offset == victim.offset
    for args in (["select", "t", "w_a"], ["ingest", "lp", "t", "-"], ["recover", "t"]):
        result = cli(*args, stdin="w_a v=1 1\n")
        assert result.code == 5, (args, result)
        assert f"offset {victim.offset}" in result.err
        assert "wal verify" in result.err
        assert "Traceback" not in result.err
    assert path.read_bytes() == before, "a refused open must not change the WAL"


def test_wal_with_missing_records_after_the_checkpoint_is_refused(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "t")
    write_batches(db_dir, 2)
    path = db_dir / "wal" / "current.wal"
    path.unlink()
    # a fresh WAL that starts later than the manifest's checkpoint LSN + 1: records lost
    w = wal.WalWriter(path, "t", 50, create=True)
    w.close()
    with pytest.raises(Corruption, match="missing"):
        Database.open(db_dir, "t")


def test_recover_dry_run_changes_nothing(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    db_dir = new_db(data_dir, "t")
    write_batches(db_dir, 3)
    path = db_dir / "wal" / "current.wal"
    last = scan_file(path).records[-1]
    path.write_bytes(path.read_bytes()[:-5])
    before = path.read_bytes()
    dry = cli("--format", "json", "recover", "t", "--dry-run")
    assert dry.code == 0, dry.err
    assert dry.json()["bytes_truncated"] == last.size - 5 and dry.json()["dry_run"] is True
    assert path.read_bytes() == before
    real = cli("--format", "json", "recover", "t")
    assert real.code == 0 and real.json()["repaired"] is True
    assert real.json()["transactions_applied"] == 2
    again = cli("--format", "json", "recover", "t")
    assert again.json()["needed"] is False


def test_off_level_keeps_data_across_clean_close(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "t", wal_level="off")
    db = Database.open(db_dir, "t", background=False)
    assert db.settings.wal_level is WalLevel.OFF
    db.write(workload.make_batch(0, 5))
    db.close()
    assert present_batches(db_dir) == {0: 10}
