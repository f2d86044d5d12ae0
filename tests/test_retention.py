"""Retention (issue 13): partitions that ended before now - retention go, a partition at
a time and with no rewriting; older points are refused at ingest as rejected lines; the
expiry is logged, so backups, restores and replicas agree with the database."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa

from engine.db.database import Batch, Database
from tests.conftest import CLEAN_ENV, ROOT, new_db, run_cli

DAY = 86400 * 10**9


def _day_start(ns: int) -> int:
    return ns - ns % DAY


# Four points a day. The first at midnight: in the first hour of a UTC day a point at
# 01h would still be in the future, and today's partition would hold nothing.
HOURS = (0, 6, 12, 18)


def _lines(now: int, days: int, tables: tuple[str, ...] = ("cpu", "mem")) -> str:
    """Four points a day (``HOURS``) per table, for ``days`` days back; none in the future."""
    today = _day_start(now)
    out = []
    for d in range(days):
        for hour in HOURS:
            ts = today - d * DAY + hour * 3600 * 10**9
            if ts <= now:
                out += [f"{t},host=a v={d}.{hour} {ts}" for t in tables]
    return "\n".join(out) + "\n"


def _times(data_dir: Path, table: str) -> list[int]:
    result = run_cli(data_dir, "select", "m", table, "--epoch", "--format", "json")
    assert result.code == 0, result.err
    return sorted(r["ts"] for r in result.json())


def _segment_partitions(data_dir: Path) -> dict[str, set[int]]:
    manifest = json.loads((data_dir / "m" / "manifest.json").read_text())
    return {
        name: {s["partition"] for s in entry["segments"]}
        for name, entry in manifest["tables"].items()
    }


def test_setting_a_retention_expires_exactly_the_partitions_outside_it(data_dir: Path) -> None:
    now = time.time_ns()
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=_lines(now, 10)).code == 0
    before = {t: _times(data_dir, t) for t in ("cpu", "mem")}
    files_before = set((data_dir / "m" / "tables").rglob("*.parquet"))
    assert len(_segment_partitions(data_dir)["cpu"]) == 10

    # a retention that removes data now says what, and wants --yes (issue 25: it deleted
    # at once, without a word)
    refused = run_cli(data_dir, "config", "set", "m", "retention", "3d")
    assert refused.code == 2 and "--yes" in refused.err and "would remove" in refused.err
    assert "in 6 partition(s) of cpu, mem" in refused.err, refused.err
    assert set((data_dir / "m" / "tables").rglob("*.parquet")) == files_before
    dry = run_cli(
        data_dir, "config", "set", "m", "retention", "3d", "--dry-run", "--format", "json"
    )
    assert dry.code == 0 and dry.json()["dry_run"] and dry.json()["expired"]["partition_count"] == 6
    assert run_cli(data_dir, "config", "get", "m", "retention").out.strip() == "none"
    changed = run_cli(data_dir, "config", "set", "m", "retention", "3d", "--yes")
    assert changed.code == 0, changed.err
    expired_rows = sum(
        1 for t in ("cpu", "mem") for ts in before[t] if ts < _day_start(now - 3 * DAY)
    )
    assert f"removed {expired_rows:,} rows (as stored) in 6 partition(s)" in changed.err
    cutoff = _day_start(now - 3 * DAY)  # the oldest partition kept starts here
    for table in ("cpu", "mem"):
        assert _times(data_dir, table) == [t for t in before[table] if t >= cutoff]
        assert _segment_partitions(data_dir)[table] == {
            _day_start(t) for t in before[table] if t >= cutoff
        }
    # no rewriting: the files kept are the very files that were there, the others gone
    files_after = set((data_dir / "m" / "tables").rglob("*.parquet"))
    assert files_after < files_before and len(files_after) == 2 * 4
    shown = run_cli(data_dir, "db", "show", "m", "--format", "json").json()
    assert shown["settings"]["retention"] == "3d"
    assert run_cli(data_dir, "config", "get", "m", "retention").out.strip() == "3d"
    assert run_cli(data_dir, "db", "verify", "m").code == 0
    # and back to keeping forever
    assert run_cli(data_dir, "config", "set", "m", "retention", "none").code == 0
    got = run_cli(data_dir, "config", "get", "m", "--format", "json").json()
    assert got["retention"] == "none"


def test_a_checkpoint_expires_what_aged_out_and_a_standby_never_does(data_dir: Path) -> None:
    """Points written before retention was set (through the engine, which does not
    filter) age out at the next `tsadmin checkpoint`; the WAL shows the logged expiry."""
    db_dir = new_db(data_dir, "m", retention="2d")
    now = time.time_ns()
    old = [_day_start(now) - d * DAY + 3600 * 10**9 for d in range(6)]
    with Database.open(db_dir, "m", background=False) as db:
        rows = pa.table({"ts": pa.array(old, pa.int64()), "v": pa.array([1.0] * 6)})
        db.write([Batch("cpu", rows)])
        db.abandon()  # no clean close: the rows are only in the WAL, nothing expired yet
    records = run_cli(data_dir, "wal", "inspect", "m", "--format", "json").json()["records"]
    assert "DELETE" not in [r["type"] for r in records]
    done = run_cli(data_dir, "checkpoint", "m", "--format", "json")
    assert done.code == 0, done.err
    cutoff = _day_start(now - 2 * DAY)
    gone = [t for t in old if t < cutoff]
    assert done.json()[0]["rows_expired"] == len(gone)  # the report says what went
    assert done.json()[0]["partitions_expired"] == len(gone)
    assert _times(data_dir, "cpu") == sorted(t for t in old if t >= cutoff)
    assert _segment_partitions(data_dir)["cpu"] == {_day_start(t) for t in old if t >= cutoff}


def test_a_running_writer_expires_partitions_in_its_maintenance(data_dir: Path) -> None:
    now = time.time_ns()
    assert run_cli(data_dir, "db", "create", "m", "--checkpoint-interval", "1s").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=_lines(now, 8, ("cpu",))).code == 0
    assert len(_segment_partitions(data_dir)["cpu"]) == 8
    # the setting logged by a writer that then stops without a checkpoint
    db = Database.open(data_dir / "m", "m", background=False)
    db.set_setting("retention", "2d")
    db.abandon()
    assert len(_segment_partitions(data_dir)["cpu"]) == 8
    # an ingest from a pipe that stays open: a writer whose maintenance runs meanwhile
    writer = subprocess.Popen(
        [sys.executable, "-m", "tsadmin", "--data-dir", str(data_dir), "ingest", "lp", "m", "-"],
        stdin=subprocess.PIPE,
        env=CLEAN_ENV,
        cwd=ROOT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(_segment_partitions(data_dir)["cpu"]) > 3:
            time.sleep(0.2)
        assert writer.poll() is None  # expired by the running writer's interval checkpoint
        assert len(_segment_partitions(data_dir)["cpu"]) == 3
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0


def test_points_older_than_the_retention_are_rejected_not_fatal(
    data_dir: Path, tmp_path: Path
) -> None:
    assert run_cli(data_dir, "db", "create", "m", "--retention", "2d").code == 0
    now = time.time_ns()
    old, new = now - 5 * DAY, now - 3600 * 10**9
    lp = f"cpu v=1 {old}\ncpu v=2 {new}\ncpu v=3 {old + 1}\n"
    for policy in ("abort", "skip"):
        rejects = tmp_path / f"rejects-{policy}.txt"
        result = run_cli(
            data_dir, "ingest", "lp", "m", "-", "--on-error", policy, "--rejects", str(rejects),
            "--format", "json", stdin=lp,
        )  # fmt: skip
        assert result.code == 7, result  # a partial load, not an error that stops the run
        report = result.json()
        assert (report["rows"], report["rejected"]) == (1, 2)
        text = rejects.read_text()
        assert text.count("older than the retention period (2d)") == 2
        assert "stdin:1:" in text and "stdin:3:" in text and f"cpu v=1 {old}" in text
    csv = f"ts,host,v\n{old},a,1\n{new},a,2\n"
    rejects = tmp_path / "rejects.csv"
    result = run_cli(
        data_dir, "ingest", "csv", "m", "-", "--table", "disk", "--tags", "host",
        "--rejects", str(rejects), "--on-error", "skip", "--format", "json", stdin=csv,
    )  # fmt: skip
    assert result.code == 7, result
    assert (result.json()["rows"], result.json()["rejected"]) == (1, 1)
    assert "stdin:2: point is older than the retention period" in rejects.read_text()
    assert _times(data_dir, "cpu") == [new] and _times(data_dir, "disk") == [new]


def test_retention_keeps_an_incremental_chain_restorable(data_dir: Path, tmp_path: Path) -> None:
    now = time.time_ns()
    assert run_cli(data_dir, "db", "create", "m").code == 0
    assert run_cli(data_dir, "ingest", "lp", "m", "-", stdin=_lines(now, 9)).code == 0
    store = tmp_path / "store"
    backup = ["backup", "create", "m", "--to", str(store)]
    assert run_cli(data_dir, *backup, "--name", "full").code == 0
    assert run_cli(data_dir, "config", "set", "m", "retention", "4d", "--yes").code == 0
    assert run_cli(data_dir, *backup, "--incremental", "--name", "inc").code == 0
    restored = run_cli(data_dir, "restore", str(store / "inc"), "--db", "back")
    assert restored.code == 0, restored.err
    want = run_cli(data_dir, "db", "checksum", "m", "--format", "json").json()
    got = run_cli(data_dir, "db", "checksum", "back", "--format", "json").json()
    assert got["sha256"] == want["sha256"] and got["rows"] == 2 * 4 * 5 - _future(now)
    table = json.loads((store / "inc" / "manifest.json").read_text())["tables"]["cpu"]
    assert len(table["replaced_partitions"]) == 4  # the four expired days, now empty
    assert run_cli(data_dir, "backup", "verify", str(store / "inc")).code == 0


def _future(now: int) -> int:
    """Points of today's schedule still in the future (not written), over both tables."""
    today = _day_start(now)
    return 2 * sum(1 for hour in HOURS if today + hour * 3600 * 10**9 > now)


def test_rejected_lines_are_counted_by_reason_without_a_rejects_file(data_dir: Path) -> None:
    """Issue 25: 300 rows rejected and not a word why unless --rejects was given."""
    assert run_cli(data_dir, "db", "create", "m", "--retention", "30d").code == 0
    sample = ROOT / "examples" / "data" / "weather.csv"
    result = run_cli(data_dir, "ingest", "csv", "m", str(sample), "--ts-column", "time")
    assert result.code == 7
    assert (
        "300 rejected: point is older than the retention period (30d) of the database "
        f"(first: {sample}:2)" in result.err
    ), result.err
    now = time.time_ns()
    lines = f"cpu v=1 {now}\ncpu v=x {now}\ncpu v=y {now}\ncpu v=1 {now - 90 * DAY}\n"
    report = run_cli(
        data_dir, "--format", "json", "ingest", "lp", "m", "-", "--on-error", "skip", stdin=lines
    ).json()
    kinds = {r["reason"]: r for r in report["rejected_reasons"]}
    assert kinds["field value … of field … has unrecognized type"]["count"] == 2
    assert kinds["field value … of field … has unrecognized type"]["first_where"] == "stdin:2:7"
    older = kinds["point is older than the retention period (30d) of the database"]
    assert older["count"] == 1 and older["first_where"] == "stdin:4"
    assert report["rejected"] == 3 and report["rows"] == 1
