"""Incremental backups read what changed from the segments' digests: a random history
of ingests, upserts over old points, rows left in the WAL, deletes, compactions and
checkpoints, with an incremental after each step, restores to the checksum the database
had at each backup; and an incremental copies only the segments that are new."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from engine import Database
from engine.storage.deletes import DeleteSpec
from tests.test_backup import checksum, wal_rows

DAY = 86_400 * 10**9
T0 = 1_700_000_000 * 10**9 // DAY * DAY


def lines(rng: random.Random, count: int, days: int) -> list[str]:
    out = []
    for _ in range(count):
        host, day, second = rng.randint(0, 3), rng.randint(0, days - 1), rng.randint(0, 40)
        fields = [f"usage={rng.randint(0, 99)}.5"] if rng.random() < 0.8 else []
        fields += [f"n={rng.randint(0, 9)}i"] if rng.random() < 0.5 or not fields else []
        out.append(f"cpu,host=h{host} {','.join(fields)} {T0 + day * DAY + second * 10**9}")
    return out


@pytest.mark.parametrize("seed", range(5))
def test_a_random_history_of_incrementals_restores_each_state(
    cli, data_dir: Path, tmp_path: Path, seed: int
) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    bk = tmp_path / "bk"
    assert cli("db", "create", "src").code == 0
    assert cli("ingest", "lp", "src", "-", stdin="\n".join(lines(rng, 60, 4)) + "\n").code == 0
    assert cli("backup", "create", "src", "--to", str(bk), "--name", "b0").code == 0
    states = {"b0": checksum(cli, "src")}
    steps = []
    for n in range(1, 9):
        step = rng.choice(["ingest", "ingest", "old", "wal", "delete", "logged", "compact", "same"])
        steps.append(step)
        if step in ("ingest", "old"):  # new days, or upserts over stored points
            body = lines(rng, rng.randint(1, 30), 6 if step == "ingest" else 2)
            assert cli("ingest", "lp", "src", "-", stdin="\n".join(body) + "\n").code == 0
        elif step == "wal":  # committed, left in the WAL: the backup reads the memtable
            wal_rows(data_dir, lines(rng, 10, 6))
        elif step in ("delete", "logged"):
            day = rng.randint(0, 5)
            start, end = T0 + day * DAY, T0 + day * DAY + rng.randint(1, 40) * 10**9
        if step == "logged":  # a delete logged, its partitions not yet rewritten
            db = Database.open(data_dir / "src", "src", background=False)
            db.log_delete(DeleteSpec("cpu", start, end))
            db.abandon()
        elif step == "delete":
            assert (
                cli("delete", "src", "cpu", "--start", str(start), "--end", str(end), "--yes").code
                == 0
            )
        elif step == "compact":
            assert cli("compact", "src").code == 0
        name = f"b{n}"
        made = cli("backup", "create", "src", "--to", str(bk), "--incremental", "--name", name)
        assert made.code == 0, (steps, made.err)
        states[name] = checksum(cli, "src")
    for name, digest in states.items():
        assert cli("restore", str(bk / name), "--db", f"r{name}").code == 0, (steps, name)
        assert checksum(cli, f"r{name}") == digest, (steps, name)
    assert cli("backup", "verify", str(bk / "b8")).code == 0


def test_an_incremental_copies_only_new_segments(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(1)
    bk = tmp_path / "bk"
    assert cli("db", "create", "src").code == 0
    assert cli("ingest", "lp", "src", "-", stdin="\n".join(lines(rng, 200, 5)) + "\n").code == 0
    assert cli("backup", "create", "src", "--to", str(bk), "--name", "full").code == 0

    def incremental(name: str) -> dict:  # type: ignore[type-arg]
        made = cli(
            "--format",
            "json",
            "backup",
            "create",
            "src",
            "--to",
            str(bk),
            "--incremental",
            "--name",
            name,
        )
        assert made.code == 0, made.err
        return made.json()  # type: ignore[no-any-return]

    unchanged = incremental("same")
    assert unchanged["files_copied"] == unchanged["files_written"] == unchanged["rows"] == 0
    # one more day: one new segment in one new partition, copied as it is
    later = [f"cpu,host=h9 usage=1.5 {T0 + 9 * DAY + s * 10**9}" for s in range(50)]
    assert cli("ingest", "lp", "src", "-", stdin="\n".join(later) + "\n").code == 0
    grown = incremental("grown")
    assert (grown["files_copied"], grown["files_written"], grown["rows"]) == (1, 0, 50)
    manifest = json.loads((bk / "grown" / "manifest.json").read_text())
    assert "replaced_partitions" not in manifest["tables"]["cpu"]  # only added rows
    # a delete rewrites one partition: that partition, whole, replaces the base's
    assert (
        cli("delete", "src", "cpu", "--start", str(T0), "--end", str(T0 + 10**9), "--yes").code == 0
    )
    deleted = incremental("deleted")
    manifest = json.loads((bk / "deleted" / "manifest.json").read_text())
    assert len(manifest["tables"]["cpu"].get("replaced_partitions", [])) == 1
    assert deleted["files_copied"] + deleted["files_written"] >= 1
    assert cli("restore", str(bk / "deleted"), "--db", "back").code == 0
    assert checksum(cli, "back") == checksum(cli, "src")
