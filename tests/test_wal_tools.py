"""wal inspect / verify / dump / repair, and crash simulate, on real files and processes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine import Database
from engine.db import walcheck, walrepair
from engine.harness import workload
from engine.harness.workload import Acks, verify
from engine.log import wal
from engine.log.reader import scan_file
from engine.settings import WalLevel
from tests.conftest import new_db, start_writer, wait_ready


def abandoned_db(data_dir: Path, name: str, batches: int, rows: int) -> Path:
    db_dir = new_db(data_dir, name)
    db = Database.open(db_dir, name, background=False)
    for i in range(batches):
        db.write(workload.make_batch(i, rows))
    db.abandon()
    return db_dir


@pytest.mark.parametrize("part", range(4))  # every 4th byte each: the workers share it
def test_verify_catches_every_single_byte_flip_and_repair_reopens(
    data_dir: Path, tmp_path: Path, part: int
) -> None:
    pristine = abandoned_db(data_dir, "f", 2, 2)
    path = pristine / "wal" / "current.wal"
    clean = path.read_bytes()
    assert walcheck.verify(pristine, "f").ok
    work = tmp_path / "work"
    shutil.copytree(pristine, work)
    for offset in range(part, len(clean), 4):
        shutil.rmtree(work / "salvaged", ignore_errors=True)
        damaged = bytearray(clean)
        damaged[offset] ^= 0xFF
        (work / "wal" / "current.wal").write_bytes(bytes(damaged))
        report = walcheck.verify(work, "f")
        assert not report.ok, f"a flipped byte at offset {offset} went unnoticed"
        try:
            walrepair.repair(work, "f", salvage=False, dry_run=False)
        except Exception:
            walrepair.repair(work, "f", salvage=True, dry_run=False)
        assert walcheck.verify(work, "f").ok, offset
        Database.open(work, "f", background=False).abandon()  # repaired: it opens for writing


def flip_in_data_record(db_dir: Path, txn: int) -> tuple[Path, wal.Record]:
    """Flip a payload bit of the first DATA record of ``txn`` in current.wal."""
    path = db_dir / "wal" / "current.wal"
    scan = scan_file(path)
    victim = next(r for r in scan.records if r.type is wal.RecordType.DATA and r.txn == txn)
    data = bytearray(path.read_bytes())
    data[victim.offset + 50] ^= 0x01
    path.write_bytes(bytes(data))
    return path, victim


def test_salvage_reports_exactly_what_was_lost(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    db_dir = abandoned_db(data_dir, "s", 5, 4)
    wal_file = db_dir / "wal" / "current.wal"
    before = [(r.lsn, r.txn, r.type) for r in scan_file(wal_file).records]
    path, victim = flip_in_data_record(db_dir, txn=4)
    original = path.read_bytes()
    assert cli("wal", "verify", "s").code == 3
    assert cli("select", "s", "w_a").code == 5
    assert cli("wal", "repair", "s").code == 5  # a tail cut cannot fix this
    for spelling in (["salvage"], ["repair", "--salvage"]):  # one verb, as db salvage
        refused = cli("wal", *spelling, "s")
        assert refused.code == 2 and "--yes" in refused.err
        dry = cli("--format", "json", "wal", *spelling, "s", "--dry-run")
        assert dry.code == 0 and path.read_bytes() == original
        assert dry.json()["transactions_dropped"] == [4]
    done = cli("--format", "json", "wal", "salvage", "s", "--yes")
    assert done.code == 0, done.err
    report = done.json()
    assert report["transactions_dropped"] == [4] and report["rows_dropped"] == 8
    assert report["dropped_regions"][0]["offset"] == victim.offset
    assert report["lost_lsn_ranges"] == [[victim.lsn, victim.lsn]]
    assert (Path(report["backup_dir"]) / "current.wal").read_bytes() == original
    assert cli("wal", "verify", "s").code == 0
    # every kept record keeps its LSN (replicas address records by LSN); GAP records stand
    # for the lost ones, so the LSNs still run without a hole
    after = scan_file(wal_file).records
    kept = [(r.lsn, r.txn, r.type) for r in after if r.type is not wal.RecordType.GAP]
    assert kept == [b for b in before if b[1] != 4]
    lost = [(r.lsn, wal.decode_gap(r.payload)) for r in after if r.type is wal.RecordType.GAP]
    assert sum(last - first + 1 for first, last in lost) == len(before) - len(kept)
    assert verify(db_dir, "s", Acks(acked={0, 1, 2, 4}), 4, WalLevel.SYNC).ok
    assert sorted(
        set(cli("--format", "json", "select", "s", "w_b").json()[i]["batch"] for i in range(16))
    ) == [0, 1, 2, 4]


def test_inspect_filters_and_dump(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    abandoned_db(data_dir, "i", 3, 5)
    everything = cli("--format", "json", "wal", "inspect", "i").json()
    assert everything["files"][0]["role"] == "current"
    kinds = [r["type"] for r in everything["records"]]
    # the settings record of the creation, then one schema record per table
    assert kinds.count("COMMIT") == 3 and kinds.count("DATA") == 6 and kinds.count("DDL") == 3
    one_txn = cli("--format", "json", "wal", "inspect", "i", "--txn", "2").json()["records"]
    assert {r["txn"] for r in one_txn} == {2} and len(one_txn) == 3
    w_b = cli("--format", "json", "wal", "inspect", "i", "--table", "w_b").json()["records"]
    assert {r["table"] for r in w_b} == {"w_b"} and len(w_b) == 3
    window = cli(
        "--format", "json", "wal", "inspect", "i", "--from-lsn", "4", "--to-lsn", "6"
    ).json()
    assert [r["lsn"] for r in window["records"]] == [4, 5, 6]
    assert (
        len(cli("--format", "json", "wal", "inspect", "i", "--limit", "2").json()["records"]) == 2
    )
    csv_out = cli("--format", "csv", "wal", "inspect", "i").out.splitlines()
    files_header = next(i for i, line in enumerate(csv_out) if not line)
    assert csv_out[0].startswith("file,role,bytes")
    assert csv_out[files_header + 1].startswith("file,offset,lsn,txn,type")
    data_lsn = next(r["lsn"] for r in everything["records"] if r["type"] == "DATA")
    rows = cli("--format", "json", "wal", "dump", "i", "--lsn", str(data_lsn)).json()
    assert len(rows) == 5 and {r["batch"] for r in rows} == {0}
    assert cli("wal", "dump", "i", "--lsn", "999").code == 1


def test_inspect_and_verify_beside_a_live_writer(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    db_dir = new_db(data_dir, "live")
    child = start_writer(
        db_dir, "live", "--batches", "1500", "--rows", "10", "--checkpoint-every", "40"
    )
    wait_ready(child)
    looks = 0
    while child.poll() is None and looks < 12:
        assert cli("--format", "json", "wal", "inspect", "live", "--limit", "5").code == 0
        checked = cli("--format", "json", "wal", "verify", "live")
        assert checked.code == 0, checked.out + checked.err
        looks += 1
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert looks >= 3, "the writer finished before the test could look"
    assert verify(db_dir, "live", Acks.parse(out), 10, WalLevel.SYNC).ok


@pytest.mark.parametrize("level", ["sync", "flush", "off"])
def test_simulate_every_mode_keeps_the_promise(cli, level: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("db", "create", "sim", "--wal-level", level, "--wal-fsync-period", "100").code == 0
    for mode in ("kill", "power-loss", "torn-write", "bitflip", "checkpoint"):
        result = cli(
            "--format",
            "json",
            "crash",
            "simulate",
            "sim",
            "--fault",
            mode,
            "--trials",
            "2",
            "--seed",
            "7",
            "--rows",
            "20000",
        )
        assert result.code == 0, (mode, result.out, result.err)
        report = result.json()
        assert report["ok"] and len(report["trials"]) == 2
        if mode == "power-loss" and level == "flush":  # trials outlast the fsync period
            assert all(t["acked"] > 0 for t in report["trials"]), report["trials"]
        if mode == "bitflip" and level != "off":
            assert all(t["verdict"] in ("detected", "ok") for t in report["trials"])
            assert any(t["verdict"] == "detected" for t in report["trials"])
    assert cli("--format", "json", "db", "list").json()[0]["name"] == "sim"  # scratch dirs gone
    assert cli("--format", "json", "table", "list", "sim").json() == []  # its data untouched


def test_simulate_of_a_database_with_retention_and_a_replica_keeps_the_promise(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path
) -> None:
    """The workload writes 2023 timestamps: a scratch copy keeping the database's
    retention refused or expired them all and reported every trial BROKEN (issue 25);
    nor may a scratch copy ship to the database's replica store."""
    assert cli("db", "create", "kept", "--retention", "30d").code == 0
    store = tmp_path / "store"
    assert cli("replica", "add", "kept", str(store)).code == 0
    for mode in ("kill", "checkpoint"):
        result = cli(
            "--format", "json", "crash", "simulate", "kept", "--mode", mode,
            "--trials", "2", "--seed", "3", "--rows", "5000",
        )  # fmt: skip
        assert result.code == 0, (mode, result.err)
        assert all(t["verdict"] == "ok" and t["acked"] > 0 for t in result.json()["trials"])
    assert not list(store.glob("log/*/*")), "a scratch trial shipped to the real store"


def test_simulate_catches_a_planted_missing_fsync(cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "bug")
    result = cli(
        "--format",
        "json",
        "crash",
        "simulate",
        "bug",
        "--mode",
        "power-loss",
        "--trials",
        "2",
        "--rows",
        "20000",
        env={"TSADMIN_FAULTS": "nofsync"},
    )
    assert result.code == 3, result.err
    assert all(t["verdict"] == "BROKEN" for t in result.json()["trials"])
    assert "broke the sync promise" in result.err


def test_simulate_refuses_unknown_fault(cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "x")
    for spelling in ("--fault", "--mode"):  # --mode: the old spelling, kept for a release
        result = cli("crash", "simulate", "x", spelling, "meteor")
        assert result.code == 2 and "unknown fault" in result.err
    unnamed = cli("crash", "simulate", "x")
    assert unnamed.code == 2 and "name the fault" in unnamed.err


def test_a_salvage_on_a_full_disk_keeps_no_partial_copy_and_changes_nothing(
    data_dir: Path, cli
) -> None:  # type: ignore[no-untyped-def]
    db_dir = abandoned_db(data_dir, "s", 5, 4)
    path, _ = flip_in_data_record(db_dir, txn=2)
    original = path.read_bytes()
    full = cli(
        "wal",
        "repair",
        "s",
        "--salvage",
        "--yes",
        env={"TSADMIN_FAULTS": "enospc@wal.salvage_copy"},
    )
    assert full.code == 1 and "no space" in full.err, full
    assert path.read_bytes() == original
    salvaged = db_dir / "salvaged"
    assert not salvaged.exists() or not any(salvaged.rglob("*.wal"))
    assert cli("wal", "repair", "s", "--salvage", "--yes").code == 0
