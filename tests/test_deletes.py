"""Deletes: `tsadmin delete` removes exactly what it says, crash-safe, and the log,
its tools, backups and replicas all understand it (issue 13)."""

from __future__ import annotations

import itertools
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import ops
from engine.db import reads
from engine.db.database import Batch, Database
from engine.storage import seriesindex
from engine.storage.deletes import DeleteSpec
from tests.conftest import CLEAN_ENV, ROOT, new_db, run_cli

HOUR = 3600 * 10**9
_NAMES = itertools.count()
HOSTS = ("a", "b", "c")
DCS = ("east", "west")


def _rows(points: list[tuple[str, str, int, float]]) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([p[2] for p in points], pa.int64()),
            "host": pa.array([p[0] for p in points], pa.string()),
            "dc": pa.array([p[1] for p in points], pa.string()),
            "v": pa.array([p[3] for p in points], pa.float64()),
        }
    )


def _stored(db: Database, table: str = "cpu") -> dict[tuple[str, str, int], float]:
    if table not in db.tables():
        return {}
    rows = db.scan(table)
    # the same rows a few at a time: the merged scan crosses many rounds and bounds
    assert pa.concat_tables(list(db.scan_batches(table, batch_rows=3))).equals(rows)
    ts = rows.column("ts").cast(pa.int64()).to_pylist()
    keys = list(
        zip(rows.column("dc").to_pylist(), rows.column("host").to_pylist(), ts, strict=True)
    )
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # series (tags by name), time
    _check_bounded_scans(db, table, rows)
    return {
        (h, d, t): v
        for h, d, t, v in zip(
            rows.column("host").to_pylist(),
            rows.column("dc").to_pylist(),
            ts,
            rows.column("v").to_pylist(),
            strict=True,
        )
    }


def _check_bounded_scans(db: Database, table: str, rows: pa.Table) -> None:
    """Scans bounded by a tag, a time range or both give the whole scan's rows within
    the bounds: what the series index and the bounded read's one sort must not change."""
    ts = rows.column("ts").cast(pa.int64())
    start, end = HOUR, 4 * HOUR
    in_time = pc.and_(pc.greater_equal(ts, start), pc.less(ts, end))
    for tag, value, timed in [("host", "b", False), ("dc", "west", True), (None, None, True)]:
        bounds: dict[str, object] = {}
        mask = None
        if tag is not None:
            bounds["where"] = {tag: value}
            mask = pc.equal(rows.column(tag), value)
        if timed:
            bounds |= {"start": start, "end": end}
            mask = in_time if mask is None else pc.and_(mask, in_time)
        bounded = db.scan(table, **bounds)  # type: ignore[arg-type]
        assert bounded.equals(rows.filter(mask)), bounds


point = st.tuples(
    st.sampled_from(HOSTS),
    st.sampled_from(DCS),
    st.integers(0, 12).map(lambda half_hours: half_hours * HOUR // 2),
    st.floats(-1e6, 1e6, allow_nan=False),
)
step = st.one_of(
    st.tuples(st.just("write"), st.lists(point, min_size=1, max_size=12)),
    st.tuples(
        st.just("delete"),
        st.tuples(
            st.integers(0, 12).map(lambda h: h * HOUR // 2),
            st.integers(1, 8).map(lambda h: h * HOUR // 2),
            st.dictionaries(st.sampled_from(["host", "dc"]), st.sampled_from(HOSTS + DCS)),
            st.booleans(),  # checkpoint right after it (as the command does), or leave it
        ),
    ),
    st.tuples(st.just("checkpoint"), st.none()),
    st.tuples(st.just("compact"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(step, min_size=1, max_size=14),
    max_open=st.sampled_from([2, 16]),
    few=st.sampled_from([3, reads.FEW_ROWS]),
)
def test_delete_matches_a_model(
    data_dir: Path, steps: list[tuple[str, object]], max_open: int, few: int
) -> None:
    """Writes (upserts), deletes by time range and tags, checkpoints, compactions and
    reopens in any order: the writer, a reader replaying the WAL beside it, and the
    database reopened after a crash (no clean close) all hold exactly what a dictionary
    model holds, in scan order, whatever the batch size, and whether the scan reads
    all segments side by side or merges them in spilled groups of two first. Scans
    bounded by tags and time agree with it, through every segment's series index,
    whether their rows are few enough for one sort (``few``) or not."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reads, "MAX_OPEN_SEGMENTS", max_open)
        patch.setattr(reads, "FEW_ROWS", few)
        patch.setattr(seriesindex, "ROWS_PER_SERIES", 1)  # an index in every segment
        _check_against_a_model(data_dir, steps)


def _check_against_a_model(data_dir: Path, steps: list[tuple[str, object]]) -> None:
    name = f"m{next(_NAMES)}"
    db_dir = new_db(data_dir, name, partition="1h")
    model: dict[tuple[str, str, int], float] = {}
    db = Database.open(db_dir, name, background=False)
    try:
        for kind, arg in steps:
            if kind == "write":
                points = arg  # type: ignore[assignment]
                db.write([Batch("cpu", _rows(points), ["host", "dc"])])  # type: ignore[arg-type]
                for host, dc, ts, value in points:  # type: ignore[attr-defined]
                    model[(host, dc, ts)] = value
            elif kind == "delete":
                start, width, where, checkpoint = arg  # type: ignore[misc]
                spec = DeleteSpec("cpu", start, start + width, tuple(sorted(where.items())))
                db.log_delete(spec)
                if checkpoint:
                    db.checkpoint("test")
                for key in [k for k in model if _matches(k, start, start + width, where)]:
                    del model[key]
            elif kind == "checkpoint":
                db.checkpoint("test")
            elif kind == "compact":
                db.compact()
            else:
                db.abandon()  # a crash: recovery replays what the WAL holds
                db = Database.open(db_dir, name, background=False)
            assert _stored(db) == model
            reader = Database.open(db_dir, name, readonly=True)
            assert _stored(reader) == model
    finally:
        db.abandon()
    db = Database.open(db_dir, name, background=False)
    assert _stored(db) == model
    db.close()
    assert _stored(Database.open(db_dir, name, readonly=True)) == model


def _matches(key: tuple[str, str, int], start: int, end: int, where: dict[str, str]) -> bool:
    host, dc, ts = key
    tags = {"host": host, "dc": dc}
    return start <= ts < end and all(tags[k] == v for k, v in where.items())


def _loaded(data_dir: Path, name: str = "m") -> dict[tuple[str, str, int], float]:
    """A database of 3 hosts x 2 dcs x 48 half-hours (24 one-hour partitions)."""
    new_db(data_dir, name, partition="1h")
    lines, model = [], {}
    for i in range(48):
        for host in HOSTS:
            for dc in DCS:
                ts = i * HOUR // 2
                lines.append(f"cpu,host={host},dc={dc} v={i}.5 {ts}")
                model[(host, dc, ts)] = i + 0.5
    result = run_cli(data_dir, "ingest", "lp", name, "-", stdin="\n".join(lines) + "\n")
    assert result.code == 0, result.err
    return model


def _select(data_dir: Path, name: str = "m") -> dict[tuple[str, str, int], float]:
    result = run_cli(data_dir, "select", name, "cpu", "--epoch", "--format", "json")
    assert result.code == 0, result.err
    return {(r["host"], r["dc"], r["ts"]): r["v"] for r in result.json()}


def test_delete_command_counts_refuses_without_yes_and_removes_exactly(data_dir: Path) -> None:
    model = _loaded(data_dir)
    args = ["delete", "m", "cpu", "--start", str(3 * HOUR), "--end", str(7 * HOUR)]
    args += ["--where", "host=b", "--where", "dc=west"]
    dry = run_cli(data_dir, *args, "--dry-run", "--format", "json")
    assert dry.code == 0, dry.err
    report = dry.json()
    assert report["rows"] == 8 and report["partition_count"] == 4 and report["dry_run"]
    assert report["partitions"] == [3 * HOUR, 4 * HOUR, 5 * HOUR, 6 * HOUR]
    refused = run_cli(data_dir, *args)
    assert refused.code == 2
    assert "would remove 8 rows of cpu in 4 partition(s)" in refused.err
    assert "--yes" in refused.err
    assert _select(data_dir) == model  # neither changed anything

    done = run_cli(data_dir, *args, "--yes", "--format", "json")
    assert done.code == 0, done.err
    assert done.json()["rows"] == 8 and done.json()["segments_rewritten"] == 4
    for key in [k for k in model if _matches(k, 3 * HOUR, 7 * HOUR, {"host": "b", "dc": "west"})]:
        del model[key]
    assert _select(data_dir) == model
    assert run_cli(data_dir, "db", "verify", "m").code == 0

    # a whole partition covered: dropped without a rewrite
    whole = run_cli(
        data_dir, "delete", "m", "cpu", "--start", "0", "--end", str(HOUR), "--yes",
        "--format", "json",
    )  # fmt: skip
    assert whole.json()["segments_dropped"] == 1 and whole.json()["segments_rewritten"] == 0
    model = {k: v for k, v in model.items() if k[2] >= HOUR}
    assert _select(data_dir) == model


def test_delete_refuses_what_it_cannot_mean(data_dir: Path) -> None:
    _loaded(data_dir)
    base = ["delete", "m", "cpu", "--yes"]
    cases = [
        (["--start", "5", "--end", "5"], 2, "is not after the start"),
        (["--start", "0", "--end", "9", "--where", "nohost=a"], 2, "has no tag 'nohost'"),
        (["--start", "0", "--end", "9", "--where", "host"], 2, "write it as tag=value"),
        (["--start", "0", "--end", "9", "--where", "host=a", "--where", "host=b"], 2, "twice"),
        (["--start", "yesterday", "--end", "9"], 2, "invalid time"),
    ]
    for extra, code, text in cases:
        result = run_cli(data_dir, *base, *extra)
        assert result.code == code and text in result.err, (extra, result)
        assert "Traceback" not in result.err
    missing = run_cli(data_dir, "delete", "m", "nosuch", "--start", "0", "--end", "9", "--yes")
    assert missing.code == 1 and "does not exist" in missing.err


CRASH_POINTS = [
    "torn@wal.append",  # the DELETE record itself cut short: never happened
    "crash@delete.after_log",  # logged, no checkpoint yet: replayed
    "crash@checkpoint.after_rotate",
    "torn@segment.write:2",  # a rewritten segment half written
    "crash@checkpoint.after_segments",
    "crash@checkpoint.after_manifest",
    "crash@checkpoint.after_wal_delete",
]


@pytest.mark.parametrize("fault", CRASH_POINTS)
def test_a_delete_killed_at_any_step_is_all_or_nothing(data_dir: Path, fault: str) -> None:
    before = _loaded(data_dir)
    after = {
        k: v for k, v in before.items() if not _matches(k, 2 * HOUR, 20 * HOUR, {"dc": "east"})
    }
    killed = run_cli(
        data_dir,
        *["delete", "m", "cpu", "--start", str(2 * HOUR), "--end", str(20 * HOUR)],
        *["--where", "dc=east", "--yes"],
        env={"TSADMIN_FAULTS": fault},
    )
    assert killed.code == -signal.SIGKILL, killed
    seen = _select(data_dir)  # a reader beside the dead writer: replays the WAL
    assert seen in (before, after), fault
    recovered = run_cli(data_dir, "recover", "m")
    assert recovered.code == 0, recovered.err
    assert _select(data_dir) == seen
    assert run_cli(data_dir, "checkpoint", "m").code == 0
    assert _select(data_dir) == seen
    assert run_cli(data_dir, "db", "verify", "m").code == 0
    assert run_cli(data_dir, "wal", "verify", "m").code == 0
    expected = before if fault.startswith("torn@wal") else after
    assert seen == expected, fault


@pytest.mark.parametrize("seed", range(4))
def test_a_delete_sigkilled_at_a_random_moment_is_all_or_nothing(data_dir: Path, seed: int) -> None:
    rng = random.Random(seed)
    new_db(data_dir, "m", partition="1h")
    lines = [
        f"cpu,host=h{i % 50},dc={DCS[i % 2]} v={i} {(i // 50) * 10**9 * 20}" for i in range(200_000)
    ]
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin="\n".join(lines)).code == 0
    before = run_cli(data_dir, "db", "checksum", "m", "--format", "json").json()
    cmd = [sys.executable, "-m", "tsadmin", "--data-dir", str(data_dir), "delete", "m", "cpu"]
    cmd += ["--start", "0", "--end", str(30 * HOUR), "--where", "dc=east", "--yes"]
    child = subprocess.Popen(cmd, env=CLEAN_ENV, cwd=ROOT, stderr=subprocess.PIPE)
    time.sleep(rng.uniform(0.3, 2.5))
    child.send_signal(signal.SIGKILL)
    child.wait()
    rows = run_cli(data_dir, "db", "checksum", "m", "--format", "json").json()["rows"]
    assert rows in (before["rows"], before["rows"] // 2), (seed, rows)
    assert run_cli(data_dir, "recover", "m").code == 0
    assert run_cli(data_dir, "db", "checksum", "m", "--format", "json").json()["rows"] == rows


def test_the_wal_tools_understand_a_delete_record(data_dir: Path) -> None:
    before = _loaded(data_dir)
    killed = run_cli(
        data_dir,
        *["delete", "m", "cpu", "--start", "0", "--end", str(10 * HOUR), "--where", "host=c"],
        "--yes",
        env={"TSADMIN_FAULTS": "crash@delete.after_log"},
    )
    assert killed.code == -signal.SIGKILL
    records = run_cli(data_dir, "wal", "inspect", "m", "--format", "json").json()["records"]
    deletes = [r for r in records if r["type"] == "DELETE"]
    assert len(deletes) == 1 and deletes[0]["table"] == "cpu" and deletes[0]["txn"] == 0
    lsn = str(deletes[0]["lsn"])
    dumped = run_cli(data_dir, "wal", "dump", "m", "--lsn", lsn, "--format", "json")
    assert dumped.code == 0, dumped.err
    content = dumped.json()
    assert json.dumps(content).count('"host": "c"') == 1 and "retention" not in json.dumps(content)
    verify = run_cli(data_dir, "wal", "verify", "m", "--format", "json")
    assert verify.code == 0 and verify.json()["ok"], verify.out
    # damage a later record: a salvage keeps the DELETE (it stands alone)
    extra = "\n".join(f"mem,host=a v={i} {i}" for i in range(50))
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=extra,
                   env={"TSADMIN_FAULTS": "crash@checkpoint.after_rotate"}).code != 0  # fmt: skip
    wal_file = data_dir / "m" / "wal" / "current.wal"
    if not wal_file.exists() or wal_file.stat().st_size < 200:
        wal_file = data_dir / "m" / "wal" / "checkpoint.wal"
    damaged = bytearray(wal_file.read_bytes())
    damaged[-40] ^= 0xFF
    wal_file.write_bytes(bytes(damaged))
    repair = run_cli(data_dir, "wal", "repair", "m", "--salvage", "--yes")
    assert repair.code in (0, 4), repair
    inspected = run_cli(data_dir, "wal", "inspect", "m", "--format", "json").json()
    assert "DELETE" in [r["type"] for r in inspected["records"]]
    expected = {k: v for k, v in before.items() if not _matches(k, 0, 10 * HOUR, {"host": "c"})}
    assert _select(data_dir) == expected


def test_a_delete_record_in_an_older_wal_file_is_damage(data_dir: Path) -> None:
    """The version rule: DELETE came with WAL version 3; in a version 2 file it cannot be
    a crash's leftover, so it is reported, not applied or skipped."""
    _loaded(data_dir)
    killed = run_cli(
        data_dir, "delete", "m", "cpu", "--start", "0", "--end", str(HOUR), "--yes",
        env={"TSADMIN_FAULTS": "crash@delete.after_log"},
    )  # fmt: skip
    assert killed.code == -signal.SIGKILL
    wal_file = data_dir / "m" / "wal" / "current.wal"
    data = bytearray(wal_file.read_bytes())
    assert data[8:10] == b"\x03\x00"
    data[8:10] = b"\x02\x00"
    import crc32c

    from engine.log import wal

    size = wal.header_size("m")
    data[size - 4 : size] = crc32c.crc32c(bytes(data[: size - 4])).to_bytes(4, "little")
    wal_file.write_bytes(bytes(data))
    verify = run_cli(data_dir, "wal", "verify", "m")
    assert verify.code == 3 and "a DELETE record in a version 2 file" in verify.out


def test_full_and_incremental_restore_never_resurrect_deleted_rows(
    data_dir: Path, tmp_path: Path
) -> None:
    model = _loaded(data_dir)
    store = tmp_path / "backups"
    backup = ["backup", "create", "m", "--to", str(store)]
    assert run_cli(data_dir, *backup, "--name", "full").code == 0
    delete = ["delete", "m", "cpu", "--start", str(5 * HOUR), "--end", str(9 * HOUR)]
    assert run_cli(data_dir, *delete, "--where", "host=a", "--yes").code == 0
    more = "\n".join(f"cpu,host=d,dc=east v=1 {i * HOUR}" for i in range(30, 34))
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=more).code == 0
    inc1 = run_cli(data_dir, "backup", "create", "m", "--to", str(store), "--incremental",
                   "--name", "inc1", "--format", "json")  # fmt: skip
    assert inc1.code == 0, inc1.err
    assert run_cli(data_dir, "delete", "m", "cpu", "--start", "0", "--end", str(2 * HOUR),
                   "--yes").code == 0  # fmt: skip
    inc2 = run_cli(data_dir, "backup", "create", "m", "--to", str(store), "--incremental",
                   "--name", "inc2")  # fmt: skip
    assert inc2.code == 0, inc2.err

    manifest = json.loads((store / "inc1" / "manifest.json").read_text())
    table = manifest["tables"]["cpu"]
    assert table["mode"] == "delta"
    assert table["replaced_partitions"] == [5 * HOUR, 6 * HOUR, 7 * HOUR, 8 * HOUR]
    # an independent reader: the replaced partitions' files hold their whole rows, no host a
    for item in table["files"]:
        rows = pq.read_table(store / "inc1" / item["path"])
        if item["partition"] in table["replaced_partitions"]:
            assert "a" not in rows.column("host").to_pylist() and rows.num_rows == 8
    assert (
        "replaced_partitions"
        not in json.loads((store / "full" / "manifest.json").read_text())["tables"]["cpu"]
    )

    want = run_cli(data_dir, "db", "checksum", "m", "--format", "json").json()
    for archive, name in (("inc2", "r2"), ("inc1", "r1")):
        restored = run_cli(data_dir, "restore", str(store / archive), "--db", name)
        assert restored.code == 0, restored.err
    assert _checksum(data_dir, "r2") == want["sha256"]
    expected = {
        k: v for k, v in model.items() if not _matches(k, 5 * HOUR, 9 * HOUR, {"host": "a"})
    }
    expected.update({("d", "east", i * HOUR): 1.0 for i in range(30, 34)})
    assert _select(data_dir, "r1") == expected
    # a single table from the chain, into an existing database
    assert run_cli(data_dir, "restore", str(store / "inc2"), "--db", "r1", "--table", "cpu",
                   "--mode", "replace", "--yes").code == 0  # fmt: skip
    assert _checksum(data_dir, "r1") == want["sha256"]
    # a full archive taken now holds none of the deleted rows
    assert run_cli(data_dir, *backup, "--name", "full2").code == 0
    hosts_times = set()
    listed = json.loads((store / "full2" / "manifest.json").read_text())["tables"]["cpu"]
    for item in listed["files"]:
        rows = pq.read_table(store / "full2" / item["path"])
        ts = rows.column("ts").cast(pa.int64()).to_pylist()
        hosts_times |= set(zip(rows.column("host").to_pylist(), ts, strict=True))
    assert not any(h == "a" and 5 * HOUR <= t < 9 * HOUR for h, t in hosts_times)
    assert not any(t < 2 * HOUR for _, t in hosts_times)


def _checksum(data_dir: Path, name: str) -> str:
    return str(run_cli(data_dir, "db", "checksum", name, "--format", "json").json()["sha256"])


def test_a_backup_beside_a_logged_delete_leaves_the_rows_out(
    data_dir: Path, tmp_path: Path
) -> None:
    """A delete logged but not yet checkpointed (the writer died in between): a backup
    reads the segments through it."""
    model = _loaded(data_dir)
    killed = run_cli(
        data_dir, "delete", "m", "cpu", "--start", "0", "--end", str(30 * HOUR), "--where",
        "host=b", "--yes", env={"TSADMIN_FAULTS": "crash@delete.after_log"},
    )  # fmt: skip
    assert killed.code == -signal.SIGKILL
    store = tmp_path / "b"
    assert run_cli(data_dir, "backup", "create", "m", "--to", str(store), "--name", "x").code == 0
    assert run_cli(data_dir, "restore", str(store / "x"), "--db", "copy").code == 0
    expected = {k: v for k, v in model.items() if not _matches(k, 0, 30 * HOUR, {"host": "b"})}
    assert _select(data_dir, "copy") == expected
    assert (
        ops.database_checksum(data_dir, "copy").sha256
        == ops.database_checksum(data_dir, "m").sha256
    )
