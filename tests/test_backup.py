"""Backup and restore: round trips read back by DuckDB, live backups, damage, crashes, chains."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from engine import Database
from engine.harness import workload
from engine.harness.workload import Acks, verify
from engine.settings import WalLevel
from tests.conftest import kill_after, new_db, read_until_acked, start_writer, wait_ready

HOUR = 3_600_000_000_000
LINES = [
    f"cpu,host=h{i % 4},dc=d{i % 2} usage={i * 0.5},n={i}i {1700000000000000000 + i * HOUR}"
    for i in range(300)
] + [f"mem,host=h{i % 3} free={i}i {1700000000000000000 + i * 60_000_000_000}" for i in range(100)]


@pytest.fixture
def source(cli):  # type: ignore[no-untyped-def]
    """A database whose rows sit in segments of several partitions, and in the WAL."""
    assert cli("db", "create", "src").code == 0
    assert (
        cli("ingest", "lp", "src", "-", stdin="\n".join(LINES[:150] + LINES[300:350]) + "\n").code
        == 0
    )
    # upserts over checkpointed rows, plus rows left in the WAL by a writer that is killed
    assert (
        cli(
            "ingest", "lp", "src", "-", stdin="cpu,host=h0,dc=d0 usage=99.5 1700000000000000000\n"
        ).code
        == 0
    )
    return cli


def wal_rows(data_dir: Path, lines: list[str]) -> None:
    """Commit ``lines`` and leave them in the WAL only (the writer dies uncleanly)."""
    from engine import ops
    from engine.ingest.pipeline import IngestOptions

    db = Database.open(data_dir / "src", "src", background=False)
    import io

    from engine.ingest.pipeline import ingest_lp

    ingest_lp(db, io.BytesIO(("\n".join(lines) + "\n").encode()), "x", IngestOptions())
    db.abandon()
    assert ops  # imported for symmetry with the CLI path


def checksum(cli, db: str, *tables: str) -> str:  # type: ignore[no-untyped-def]
    args = [a for t in tables for a in ("--table", t)]
    result = cli("--format", "json", "db", "checksum", db, *args)
    assert result.code == 0, result.err
    return str(result.json()["sha256"])


COLUMNS = {"cpu": ["host", "dc", "usage", "n"], "mem": ["host", "free"]}


def duckdb_rows(archive: Path, table: str) -> list[tuple]:  # type: ignore[type-arg]
    """The table's rows as DuckDB reads the archive's Parquet files (no tsadmin involved)."""
    files = sorted(str(p) for p in (archive / table).glob("*.parquet"))
    cols = COLUMNS[table]
    tags = [c for c in cols if c in ("host", "dc")]
    query = (
        f"SELECT epoch_ns(ts), {', '.join(cols)} FROM read_parquet({files}) "
        f"ORDER BY {', '.join(tags)}, ts"
    )
    return duckdb.connect().execute(query).fetchall()


def our_rows(cli, db: str, table: str) -> list[tuple]:  # type: ignore[no-untyped-def,type-arg]
    rows = cli("--format", "json", "select", db, table, "--epoch").json()
    return [(r["ts"], *[r[c] for c in COLUMNS[table]]) for r in rows]


def test_database_round_trip_and_duckdb_reads_the_archive(
    source, data_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cli = source
    wal_rows(
        data_dir, LINES[150:300] + LINES[350:]
    )  # committed, not checkpointed: the backup must hold them too
    before = checksum(cli, "src")
    made = cli("--format", "json", "backup", "create", "src", "--to", str(tmp_path / "bk"))
    assert made.code == 0, made.err
    report = made.json()
    archive = Path(report["archive"])
    assert report["rows"] == 400 and report["kind"] == "database"
    assert oct(archive.stat().st_mode & 0o777) == "0o700"
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in archive.rglob("*") if p.is_file())
    manifest = json.loads((archive / "manifest.json").read_text())
    assert manifest["snapshot_lsn"] == report["snapshot_lsn"] and manifest["base"] is None
    for table in ("cpu", "mem"):
        ours = our_rows(cli, "src", table)
        assert len(ours) == {"cpu": 300, "mem": 100}[table]
        assert sorted(duckdb_rows(archive, table)) == sorted(ours)
    assert cli("backup", "verify", str(archive)).code == 0
    restored = cli("--format", "json", "restore", str(archive), "--db", "copy")
    assert restored.code == 0, restored.err
    assert checksum(cli, "copy") == before
    assert cli("restore", str(archive), "--db", "copy").code == 1  # exists: mode fail
    assert cli("restore", str(archive), "--db", "copy", "--mode", "replace", "--yes").code == 0
    assert checksum(cli, "copy") == before


def test_duckdb_sees_exactly_our_rows(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli = source
    archive = Path(
        cli("--format", "json", "backup", "create", "src", "--to", str(tmp_path)).json()["archive"]
    )
    got = duckdb_rows(archive, "cpu")
    assert sorted(got) == sorted(our_rows(cli, "src", "cpu"))
    assert (1700000000000000000, "h0", "d0", 99.5, 0) in got  # the upsert, merged once


def test_table_round_trip_into_another_database(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli = source
    made = cli(
        "--format", "json", "backup", "create", "src", "--table", "mem", "--to", str(tmp_path)
    )
    assert made.code == 0 and made.json()["kind"] == "table" and made.json()["tables"] == 1
    archive = made.json()["archive"]
    cli("db", "create", "other")
    cli("ingest", "lp", "other", "-", stdin="mem,host=zz free=1i 1\n")
    assert cli("restore", archive, "--db", "other", "--table", "mem").code == 1  # exists, mode fail
    assert (
        cli(
            "restore", archive, "--db", "other", "--table", "mem", "--mode", "replace", "--yes"
        ).code
        == 0
    )
    assert checksum(cli, "other", "mem") == checksum(cli, "src", "mem")
    cli("ingest", "lp", "other", "-", stdin="mem,host=zz free=1i 1\n")
    assert cli("restore", archive, "--db", "other", "--table", "mem", "--mode", "merge").code == 0
    rows = cli("--format", "json", "select", "other", "mem").json()
    assert len(rows) == 51  # the archive's 50 rows, upserted onto what was there
    clash = cli("ingest", "lp", "src", "-", stdin='cpu,host=q usage="text" 5\n')
    assert clash.code == 6


def test_backup_during_a_concurrent_ingest(data_dir: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    db_dir = new_db(data_dir, "live")
    stop = tmp_path / "stop"
    child = start_writer(
        db_dir,
        "live",
        *("--batches", "100000", "--rows", "20", "--checkpoint-every", "25"),
        *("--stop-file", str(stop)),
    )
    printed = wait_ready(child)
    printed += read_until_acked(child, 60)  # a few checkpoints are behind the backup
    started = time.monotonic()
    made = cli("--format", "json", "backup", "create", "live", "--to", str(tmp_path / "bk"))
    assert made.code == 0, made.err
    assert child.poll() is None, "the writer finished before the backup: nothing was concurrent"
    stop.touch()
    out, err = child.communicate(timeout=180)
    assert child.returncode == 0, err  # the ingest was not disturbed
    acks = Acks.parse("".join(printed) + out)
    assert verify(db_dir, "live", acks, 20, WalLevel.SYNC).ok
    archive = made.json()["archive"]
    assert cli("backup", "verify", archive).code == 0
    assert cli("restore", archive, "--db", "snap").code == 0
    snap = Database.open(data_dir / "snap", "snap", readonly=True)
    present = set(snap.scan("w_a").column("batch").to_pylist())
    before_backup = {n for n, t in acks.times.items() if t < started}
    assert len(before_backup) >= 60
    assert before_backup <= present, "a batch committed before the backup is missing"
    assert present == set(range(len(present))), "not one consistent snapshot"
    assert verify(data_dir / "snap", "snap", Acks(acked=present), 20, WalLevel.SYNC).ok


def damaged_copies(archive: Path, tmp_path: Path) -> dict[str, Path]:
    out = {}
    parquet = sorted(archive.rglob("*.parquet"))[0]
    rel = parquet.relative_to(archive)

    def copy(kind: str) -> Path:
        target = tmp_path / "damaged" / kind / archive.name
        shutil.copytree(archive, target)
        return target

    flipped = copy("flip")
    data = bytearray((flipped / rel).read_bytes())
    data[len(data) // 2] ^= 0x20
    (flipped / rel).write_bytes(bytes(data))
    out["flipped byte"] = flipped
    truncated = copy("truncate")
    (truncated / rel).write_bytes((truncated / rel).read_bytes()[:-100])
    out["truncated file"] = truncated
    missing = copy("missing")
    (missing / rel).unlink()
    out["missing file"] = missing
    edited = copy("edited")
    manifest = json.loads((edited / "manifest.json").read_text())
    manifest["tables"]["cpu"]["files"][0]["rows"] += 1
    (edited / "manifest.json").write_text(json.dumps(manifest))
    out["edited manifest"] = edited
    resealed = copy("resealed")
    manifest = json.loads((resealed / "manifest.json").read_text())
    manifest["tables"]["cpu"]["files"][0]["rows"] += 1
    (resealed / "manifest.json").write_text(json.dumps(reseal(manifest)))
    out["edited and resealed manifest"] = resealed
    traversal = copy("traversal")
    manifest = json.loads((traversal / "manifest.json").read_text())
    manifest["tables"]["cpu"]["files"][0]["path"] = "../../../etc/passwd"
    (traversal / "manifest.json").write_text(json.dumps(reseal(manifest)))
    out["path traversal"] = traversal
    linked = copy("link")
    (linked / rel).unlink()
    os.symlink("/etc/hostname", linked / rel)
    out["link"] = linked
    extra = copy("extra")
    (extra / "cpu" / "999999.parquet").write_bytes((extra / rel).read_bytes())
    out["unlisted file"] = extra
    version = copy("version")
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["version"] = 99
    (version / "manifest.json").write_text(json.dumps(reseal(manifest)))
    out["unknown version"] = version
    return out


def test_damaged_archives_are_refused_and_the_target_untouched(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli = source
    archive = Path(
        cli("--format", "json", "backup", "create", "src", "--to", str(tmp_path / "bk")).json()[
            "archive"
        ]
    )
    cli("db", "create", "target")
    cli("ingest", "lp", "target", "-", stdin="cpu,host=keep usage=1 1\n")
    before = checksum(cli, "target")
    for what, damaged in damaged_copies(archive, tmp_path).items():
        checked = cli("backup", "verify", str(damaged))
        assert checked.code == 3, (what, checked.out, checked.err)
        for args in (
            ["--db", "target", "--table", "cpu", "--mode", "replace", "--yes"],
            ["--db", "fresh"],
        ):
            refused = cli("restore", str(damaged), *args)
            assert refused.code == 3, (what, args, refused.err)
            assert "Traceback" not in refused.err
        assert checksum(cli, "target") == before, what
        assert cli("db", "show", "fresh").code == 1, what


def fresh_target(cli) -> str:  # type: ignore[no-untyped-def]
    cli("db", "drop", "target", "--yes")
    assert cli("db", "create", "target").code == 0
    cli("ingest", "lp", "target", "-", stdin="cpu,host=keep usage=1 1\nmem,host=keep free=2i 2\n")
    return checksum(cli, "target")


@pytest.mark.parametrize(
    ("fault", "args"),
    [
        ("crash@restore.before_swap", ["--mode", "replace", "--yes"]),
        ("crash@restore.between_renames", ["--mode", "replace", "--yes"]),
        ("torn@restore.write:2", ["--mode", "replace", "--yes"]),
        ("torn@restore.write:2", ["--table", "cpu", "--mode", "replace", "--yes"]),
        ("crash@restore.after_copy", ["--table", "cpu", "--mode", "replace", "--yes"]),
        ("crash@restore.after_copy", ["--table", "mem", "--mode", "merge"]),
    ],
)
def test_killed_restore_leaves_the_target_unchanged(
    source, tmp_path: Path, fault: str, args: list[str]
) -> None:  # type: ignore[no-untyped-def]
    cli = source
    archive = cli("--format", "json", "backup", "create", "src", "--to", str(tmp_path)).json()[
        "archive"
    ]
    before = fresh_target(cli)
    killed = cli("restore", archive, "--db", "target", *args, env={"TSADMIN_FAULTS": fault})
    assert killed.code == -9, f"the fault did not fire: {killed.err}"
    assert checksum(cli, "target") == before
    assert [d["name"] for d in cli("--format", "json", "db", "list").json()] == ["src", "target"]
    assert cli("restore", archive, "--db", "target", *args).code == 0  # and it works afterwards


def test_restore_killed_at_random_moments(source, tmp_path: Path, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from tests.conftest import CLEAN_ENV

    cli = source
    archive = cli("--format", "json", "backup", "create", "src", "--to", str(tmp_path)).json()[
        "archive"
    ]
    cli("db", "create", "target")
    cli("ingest", "lp", "target", "-", stdin="cpu,host=keep usage=1 1\n")
    before = checksum(cli, "target")
    rng = random.Random(5)
    for _ in range(4):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tsadmin",
                "--data-dir",
                str(data_dir),
                "restore",
                archive,
                "--db",
                "target",
                "--mode",
                "replace",
                "--yes",
            ],
            env=CLEAN_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        kill_after(proc, rng.uniform(0.3, 1.2))
        now = checksum(cli, "target")
        assert now in (before, checksum(cli, "src")), "a killed restore left a third state"
        if now != before:
            break


def test_incremental_chain_restores_like_a_full_backup_and_prune_keeps_it(
    source, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cli = source
    bk = tmp_path / "bk"
    assert cli("backup", "create", "src", "--to", str(bk), "--name", "full").code == 0
    cli("ingest", "lp", "src", "-", stdin="\n".join(LINES[200:250]) + "\n")
    assert (
        cli("backup", "create", "src", "--to", str(bk), "--incremental", "--name", "inc1").code == 0
    )
    cli("ingest", "lp", "src", "-", stdin="cpu,host=h1,dc=d1 usage=7.5 1700000000000000000\n")
    cli("table", "drop", "src", "mem", "--yes")
    cli("ingest", "lp", "src", "-", stdin="mem,host=new free=5i 10\n")
    assert (
        cli("backup", "create", "src", "--to", str(bk), "--incremental", "--name", "inc2").code == 0
    )
    cli("ingest", "lp", "src", "-", stdin="disk,host=h1 used=3i 20\n")
    third = cli(
        "--format",
        "json",
        "backup",
        "create",
        "src",
        "--to",
        str(bk),
        "--incremental",
        "--name",
        "inc3",
    )
    assert third.code == 0 and third.json()["base"] == "inc2"
    assert cli("backup", "create", "src", "--to", str(bk), "--name", "full_now").code == 0
    listed = cli("--format", "json", "backup", "list", str(bk)).json()
    assert {a["name"]: a["base"] for a in listed} == {
        "full": None,
        "inc1": "full",
        "inc2": "inc1",
        "inc3": "inc2",
        "full_now": None,
    }
    assert cli("restore", str(bk / "inc3"), "--db", "from_chain").code == 0
    assert cli("restore", str(bk / "full_now"), "--db", "from_full").code == 0
    assert checksum(cli, "from_chain") == checksum(cli, "from_full") == checksum(cli, "src")
    assert cli("backup", "verify", str(bk / "inc3")).code == 0
    # prune: keep the newest two; inc3's chain must survive whole
    dry = cli(
        "--format", "json", "backup", "prune", str(bk), "--keep-last", "2", "--dry-run"
    ).json()
    assert dry["deleted"] == [] and set(dry["kept_as_base"]) == {"full", "inc1", "inc2"}
    # an altered base breaks the chain loudly
    (bk / "inc2" / "manifest.json").write_text((bk / "inc2" / "manifest.json").read_text() + " ")
    assert cli("backup", "verify", str(bk / "inc3")).code == 3
    broken = cli("restore", str(bk / "inc3"), "--db", "never")
    assert broken.code == 3 and "altered" in broken.err
    shutil.rmtree(bk / "inc1")
    assert cli("restore", str(bk / "inc2"), "--db", "never").code == 3


def reseal(body: dict) -> dict:  # type: ignore[type-arg]
    """Recompute the manifest checksum as the format spec says (independently of tsadmin)."""
    body.pop("checksum", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {**body, "checksum": hashlib.sha256(canonical).hexdigest()}


def test_prune_keeps_last_and_daily(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli = source
    bk = tmp_path / "bk"
    for i in range(4):
        assert cli("backup", "create", "src", "--to", str(bk), "--name", f"a{i}").code == 0
    for i, day in enumerate(["2026-11-01", "2026-11-01", "2026-11-02", "2026-11-03"]):
        path = bk / f"a{i}" / "manifest.json"
        body = json.loads(path.read_text())
        body["created"] = f"{day}T0{i}:00:00.000000Z"
        path.write_text(json.dumps(reseal(body)))
    result = cli(
        "--format", "json", "backup", "prune", str(bk), "--keep-last", "1", "--keep-daily", "2"
    )
    assert result.code == 0
    assert result.json()["kept"] == ["a2", "a3"] and result.json()["deleted"] == ["a0", "a1"]
    assert sorted(p.name for p in bk.iterdir()) == ["a2", "a3"]
    assert cli("backup", "prune", str(bk), "--keep-last", "0").code == 2


def test_prune_counts_table_backups_apart_and_keeps_the_full_chain(  # type: ignore[no-untyped-def]
    source, tmp_path: Path
) -> None:
    """A table archive newer than the full chain must not push the only full database
    backup (and its incrementals) out of --keep-last 1 (issue 25: it did)."""
    cli = source
    bk = tmp_path / "bk"
    assert cli("backup", "create", "src", "--to", str(bk), "--name", "full").code == 0
    assert (
        cli(
            "ingest", "lp", "src", "-", stdin="cpu,host=new,dc=d9 usage=1 1700000099000000000\n"
        ).code
        == 0
    )
    made = cli("backup", "create", "src", "--to", str(bk), "--name", "inc", "--incremental")
    assert made.code == 0, made.err
    assert (
        cli("backup", "create", "src", "--table", "cpu", "--to", str(bk), "--name", "t1").code == 0
    )
    dry = cli("backup", "prune", str(bk), "--keep-last", "1", "--dry-run")
    assert dry.code == 0
    assert "would keep inc: one of the last 1 database backups of src" in dry.out, dry.out
    assert "would keep full: base of inc" in dry.out
    assert "would keep t1: one of the last 1 backups of table(s) cpu of src" in dry.out
    report = cli("--format", "json", "backup", "prune", str(bk), "--keep-last", "1").json()
    assert report["deleted"] == [] and report["kept"] == ["full", "inc", "t1"]
    assert report["reasons"]["full"] == ["base of inc"] and report["kept_as_base"] == ["full"]
    # one more table backup: the older one goes, the database chain stays
    assert (
        cli("backup", "create", "src", "--table", "cpu", "--to", str(bk), "--name", "t2").code == 0
    )
    for i, name in enumerate(["full", "inc", "t1", "t2"]):  # distinct creation times
        path = bk / name / "manifest.json"
        body = json.loads(path.read_text())
        body["created"] = f"2026-11-0{i + 1}T00:00:00.000000Z"
        path.write_text(json.dumps(reseal(body)))
    fix_bases(bk)
    report = cli("--format", "json", "backup", "prune", str(bk), "--keep-last", "1").json()
    assert report["deleted"] == ["t1"] and report["kept"] == ["full", "inc", "t2"]
    assert cli("restore", str(bk / "inc"), "--db", "back").code == 0


def fix_bases(bk: Path) -> None:
    """Re-point each incremental at its base's resealed manifest (its recorded digest)."""
    for path in bk.glob("*/manifest.json"):
        body = json.loads(path.read_text())
        if body.get("base"):
            base = bk / body["base"]["name"] / "manifest.json"
            body["base"]["manifest_sha256"] = hashlib.sha256(base.read_bytes()).hexdigest()
            path.write_text(json.dumps(reseal(body)))


def test_backup_of_unknown_things(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli = source
    assert cli("backup", "create", "nodb", "--to", str(tmp_path)).code == 1
    assert cli("backup", "create", "src", "--table", "nope", "--to", str(tmp_path)).code == 1
    assert cli("backup", "create", "src", "--to", str(tmp_path), "--name", "../x").code == 2
    assert (
        cli("backup", "create", "src", "--to", str(tmp_path / "empty"), "--incremental").code == 1
    )
    assert cli("backup", "list", str(tmp_path / "nowhere")).code == 1
    assert not [p for p in tmp_path.rglob(".*tmp*")], "a failed backup left its staging directory"


def test_workload_helper_still_counts(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "w"), "w", background=False)
    db.write(workload.make_batch(0, 3))
    db.close()
    assert verify(data_dir / "w", "w", Acks(acked={0}), 3, WalLevel.SYNC).ok


def test_segments_with_no_key_in_common_are_copied_and_others_merged(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each ingest below ends with a checkpoint: one segment each, all in one partition."""
    t0 = 1700000000000000000
    assert cli("db", "create", "seg").code == 0
    for first in (0, 100):
        lines = [
            f"cpu,host=h{i % 2},dc=d0 usage={i}.5,n={i}i {t0 + i * 10**9}"
            for i in range(first, first + 50)
        ]
        assert cli("ingest", "lp", "seg", "-", stdin="\n".join(lines) + "\n").code == 0
    # a segment overlapping the first two in time, at instants they hold too, but of
    # another series (as when a checkpoint falls amid one instant's hosts): no key twice
    lines = [f"cpu,host=h9,dc=d0 usage=9.5 {t0 + i * 10**9}" for i in (0, 48, 100, 149)]
    assert cli("ingest", "lp", "seg", "-", stdin="\n".join(lines) + "\n").code == 0
    copied = cli("--format", "json", "backup", "create", "seg", "--to", str(tmp_path / "a")).json()
    assert copied["files_copied"] == 3 and copied["files_written"] == 0
    assert sorted(duckdb_rows(Path(copied["archive"]), "cpu")) == sorted(
        our_rows(cli, "seg", "cpu")
    )
    # an upsert into the first segment's time range: the segments now overlap
    assert cli("ingest", "lp", "seg", "-", stdin=f"cpu,host=h0,dc=d0 usage=-1.0 {t0}\n").code == 0
    merged = cli("--format", "json", "backup", "create", "seg", "--to", str(tmp_path / "b")).json()
    assert merged["files_copied"] == 0 and merged["files_written"] == 1
    rows = duckdb_rows(Path(merged["archive"]), "cpu")
    assert sorted(rows) == sorted(our_rows(cli, "seg", "cpu")) and len(rows) == 104
    assert (t0, "h0", "d0", -1.0, 0) in rows
    before = checksum(cli, "seg")
    assert cli("restore", copied["archive"], "--db", "back").code == 0
    assert cli("ingest", "lp", "back", "-", stdin=f"cpu,host=h0,dc=d0 usage=-1.0 {t0}\n").code == 0
    assert checksum(cli, "back") == before


def test_replace_asks_for_yes_and_dry_run_changes_nothing(source, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli = source
    archive = cli("--format", "json", "backup", "create", "src", "--to", str(tmp_path)).json()[
        "archive"
    ]
    before = checksum(cli, "src")
    assert cli("ingest", "lp", "src", "-", stdin="cpu,host=new,dc=x usage=1 5\n").code == 0
    changed = checksum(cli, "src")
    refused = cli("restore", archive, "--db", "src", "--mode", "replace")
    assert refused.code == 2 and "--yes" in refused.err and len(refused.err.splitlines()) == 2
    dry = cli(
        "--format", "json", "restore", archive, "--db", "src", "--mode", "replace", "--dry-run"
    )
    assert dry.code == 0 and dry.json()["dry_run"] is True and dry.json()["rows"] > 0
    assert checksum(cli, "src") == changed
    assert cli("restore", archive, "--db", "src", "--mode", "replace", "--yes").code == 0
    assert checksum(cli, "src") == before
    for args in (["db", "drop", "src", "--dry-run"], ["table", "drop", "src", "cpu", "--dry-run"]):
        shown = cli("--format", "json", *args)
        assert shown.code == 0 and shown.json()["dry_run"] is True, shown
    assert checksum(cli, "src") == before
