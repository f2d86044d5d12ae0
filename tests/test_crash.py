"""Real writer processes killed with SIGKILL: acknowledged data survives per wal_level."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine import Database
from engine.harness.workload import Acks, verify
from engine.settings import WalLevel
from tests.conftest import kill_after, new_db, start_writer, wait_ready

TRIALS = 6
ROWS = 20


@pytest.mark.parametrize("level", ["sync", "flush", "off"])
def test_sigkill_at_random_points(data_dir: Path, level: str) -> None:
    rng = random.Random(f"kill-{level}")
    checked = 0
    for trial in range(TRIALS):
        name = f"k{trial}"
        db_dir = new_db(data_dir, name, wal_level=level, wal_fsync_period="50")
        every = rng.choice([0, 7, 25])
        child = start_writer(
            db_dir,
            name,
            "--batches",
            "100000",
            "--rows",
            str(ROWS),
            "--checkpoint-every",
            str(every),
            "--threads",
            str(rng.choice([1, 3])),
        )
        out = "".join(wait_ready(child)) + kill_after(child, rng.uniform(0.05, 0.6))
        acks = Acks.parse(out)
        checked += len(acks.acked)
        verdict = verify(db_dir, name, acks, ROWS, WalLevel[level.upper()])
        assert verdict.ok, (trial, verdict)
        # the database opens for writing again and keeps what it had
        Database.open(db_dir, name, background=False).close()
        again = verify(db_dir, name, acks, ROWS, WalLevel[level.upper()])
        assert again.ok and again.recovered == verdict.recovered, (trial, again)
    assert checked > 0, "no trial had an acknowledged batch to check"


CHECKPOINT_POINTS = [
    "crash@checkpoint.after_rename",
    "crash@checkpoint.after_rotate",
    "crash@checkpoint.after_segments",
    "crash@checkpoint.after_manifest",
    "crash@checkpoint.after_wal_delete",
    "torn@segment.write",
    "torn@manifest.write",
    "torn@wal.append:3",
]


@pytest.mark.parametrize("fault", CHECKPOINT_POINTS)
@pytest.mark.parametrize("level", ["sync", "off"])
def test_crash_between_checkpoint_steps(data_dir: Path, fault: str, level: str) -> None:
    """The child dies at a checkpoint step (its 2nd checkpoint, so segments exist already);
    the reopened database has every acknowledged batch once, then takes more writes."""
    db_dir = new_db(data_dir, "c", wal_level=level)
    nth = "" if ":" in fault else ":2"
    child = start_writer(
        db_dir,
        "c",
        "--batches",
        "40",
        "--rows",
        str(ROWS),
        "--checkpoint-every",
        "5",
        "--no-background",
        faults=fault + nth,
    )
    out, err = child.communicate(timeout=60)
    assert child.returncode == -9, f"the fault did not fire: {err}"
    acks = Acks.parse(out)
    assert acks.acked, "nothing was acknowledged before the crash"
    verdict = verify(db_dir, "c", acks, ROWS, WalLevel[level.upper()])
    assert verdict.ok, verdict
    # recovery as a writer, then more batches and a clean close
    follow = start_writer(
        db_dir,
        "c",
        "--start",
        "100",
        "--batches",
        "10",
        "--rows",
        str(ROWS),
        "--checkpoint-every",
        "4",
        "--no-background",
    )
    more, err = follow.communicate(timeout=60)
    assert follow.returncode == 0, err
    both = Acks.parse(out + more)
    final = verify(db_dir, "c", both, ROWS, WalLevel.SYNC)  # after a clean close all is there
    assert not final.partial and not final.wrong, final
    assert set(range(100, 110)) <= both.acked
    leftovers = [p for p in db_dir.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


@pytest.mark.parametrize("fault", ["crash@compact.after_segments", "crash@compact.after_manifest"])
def test_crash_during_compaction(data_dir: Path, fault: str, cli) -> None:  # type: ignore[no-untyped-def]
    db_dir = new_db(data_dir, "m")
    child = start_writer(
        db_dir,
        "m",
        "--batches",
        "12",
        "--rows",
        str(ROWS),
        "--checkpoint-every",
        "2",
        "--no-background",
    )
    _, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    before = cli("--format", "json", "db", "checksum", "m").json()["sha256"]
    crashed = cli("compact", "m", env={"TSADMIN_FAULTS": fault})
    assert crashed.code == -9
    after = cli("--format", "json", "db", "checksum", "m").json()["sha256"]
    assert after == before
    done = cli("--format", "json", "compact", "m")
    assert done.code == 0, done.err
    assert done.json()["segments_after"] <= 2  # one per table and partition
    assert cli("--format", "json", "db", "checksum", "m").json()["sha256"] == before
    files = {str(p.relative_to(db_dir)) for p in (db_dir / "tables").rglob("*.parquet")}
    listed = {s["file"] for t in _manifest(db_dir)["tables"].values() for s in t["segments"]}
    assert files == listed, "orphaned or missing segment files"


def _manifest(db_dir: Path) -> dict:  # type: ignore[type-arg]
    import json

    return json.loads((db_dir / "manifest.json").read_text())


def test_kill_during_long_write_leaves_no_half_transaction(data_dir: Path) -> None:
    """Big batches (several WAL writes' worth) killed mid-stream: all or nothing per batch."""
    db_dir = new_db(data_dir, "big")
    child = start_writer(db_dir, "big", "--batches", "1000", "--rows", "3000")
    out = "".join(wait_ready(child)) + kill_after(child, 0.8)
    assert Acks.parse(out).acked, "nothing acknowledged before the kill: nothing to check"
    verdict = verify(db_dir, "big", Acks.parse(out), 3000, WalLevel.SYNC)
    assert verdict.ok and not verdict.partial, verdict


def test_child_is_really_killed(data_dir: Path) -> None:
    """The helper itself: a SIGKILLed child reports -9 (no clean close ran)."""
    db_dir = new_db(data_dir, "x")
    child = start_writer(db_dir, "x", "--batches", "100000", "--rows", "5")
    wait_ready(child)
    out = kill_after(child, 0.1)
    assert child.returncode == -9
    assert "DONE" not in out  # the workload's line after its last batch never came
