"""Replication: ingest cost of a replica (async and byrl), lag, standby apply rate, PITR.

All in one run on this machine, against a local-directory store and moto's S3 server
on 127.0.0.1 (when installed):

* ingest rows/s at sync without a replica (the reference), with a replica shipped in
  the background, and at byrl (every commit waits for the store): ratios;
* lag: seconds from a write's acknowledgement to the standby (a real ``tsadmin follow``
  process, default 1 s rounds) having applied it, at a steady rate of 20 commits/s;
* standby apply rate (``follow --once`` of the whole log) against recovery replay of
  the same WAL, rows/s;
* point-in-time restore of the middle of the log, seconds.

Run: ``.venv/bin/python benchmarks/replication.py [--rows N] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Settings, create_database  # noqa: E402
from engine.database import Batch, Database  # noqa: E402
from engine.recovery import replay  # noqa: E402

BATCH = 1_000


def batch(k: int) -> Batch:
    base = 1_700_000_000_000_000_000 + k * BATCH * 1_000_000
    rows = pa.table(
        {
            "ts": pa.array([base + i * 1_000_000 for i in range(BATCH)], pa.int64()),
            "host": [f"h{i % 100}" for i in range(BATCH)],
            "usage": [float(i) for i in range(BATCH)],
        }
    )
    return Batch("cpu", rows, ["host"])


def ingest_rate(data: Path, name: str, commits: int, *, url: str | None, level: str) -> float:
    create_database(data, name, Settings.build())
    db = Database.open(data / name, name)
    if url:
        db.add_replica(url)
    if level != "sync":
        db.set_setting("wal_level", level)
    started = time.perf_counter()
    for k in range(commits):
        db.write([batch(k)])
    elapsed = time.perf_counter() - started
    db.close()
    return commits * BATCH / elapsed


def lag(data: Path, url: str, env: dict[str, str], seconds: float = 8.0) -> dict[str, float]:
    """Acknowledgement -> applied on a following standby, at 20 commits/s."""
    create_database(data, "lag", Settings.build())
    standby_dir = data / "standby"
    standby_dir.mkdir()
    db = Database.open(data / "lag", "lag")
    db.add_replica(url)
    db.write([batch(0)])
    db.replication.ship_all()  # type: ignore[union-attr]
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tsadmin",
            "--data-dir",
            str(standby_dir),
            "follow",
            url,
            "--db",
            "lag",
        ],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = standby_dir / "lag" / "standby.json"
    acks: list[tuple[int, float]] = []
    lags: list[float] = []
    try:
        end = time.monotonic() + seconds
        k = 1
        while time.monotonic() < end:
            result = db.write([batch(k)])
            acks.append((result.lsn, time.monotonic()))
            k += 1
            time.sleep(0.05)
            _collect(state, acks, lags)
        deadline = time.monotonic() + 30
        while acks and time.monotonic() < deadline:
            _collect(state, acks, lags)
            time.sleep(0.01)
    finally:
        follower.terminate()
        follower.wait(timeout=60)
        db.close()
    return {
        "median_s": round(statistics.median(lags), 3) if lags else -1.0,
        "p95_s": round(sorted(lags)[int(len(lags) * 0.95) - 1], 3) if lags else -1.0,
        "samples": len(lags),
    }


def _collect(state: Path, acks: list[tuple[int, float]], lags: list[float]) -> None:
    try:
        applied = json.loads(state.read_text())["applied_lsn"]
    except (FileNotFoundError, ValueError, KeyError):
        return
    now = time.monotonic()
    while acks and acks[0][0] <= applied:
        lags.append(now - acks.pop(0)[1])


def apply_and_pitr(data: Path, commits: int) -> dict[str, float]:
    import engine.database as database_module

    database_module.WAL_MAX_BYTES = 1 << 40  # keep the whole log in the WAL for replay
    database_module.MEMTABLE_MAX_BYTES = 1 << 40
    url = str(data / "store")
    create_database(data, "src", Settings.build())
    db = Database.open(data / "src", "src", background=False)
    db.add_replica(url)
    db.replication.ship_all()  # type: ignore[union-attr]  # the snapshot, before the rows
    lsns = [db.write([batch(k)]).lsn for k in range(commits)]
    db.replication.ship_all()  # type: ignore[union-attr]
    started = time.perf_counter()
    replay(data / "src", "src", repair=False)
    replay_s = time.perf_counter() - started
    db.abandon()
    standby = data / "standby"
    standby.mkdir()
    started = time.perf_counter()
    _tsadmin(standby, "follow", url, "--db", "src", "--once")
    follow_s = time.perf_counter() - started
    started = time.perf_counter()
    middle = str(lsns[len(lsns) // 2])
    _tsadmin(standby, "restore", url, "--db", "pitr", "--to-lsn", middle, quiet=True)
    pitr_s = time.perf_counter() - started
    rows = commits * BATCH
    return {
        "rows": rows,
        "replay_rows_per_s": round(rows / replay_s),
        "follow_rows_per_s": round(rows / follow_s),
        "apply_vs_replay": round(replay_s / follow_s, 3),
        "pitr_half_s": round(pitr_s, 2),
    }


def _tsadmin(data: Path, *args: str, quiet: bool = False) -> None:
    """The real CLI on ``data``, its output discarded (its messages too when ``quiet``);
    a failure stops the benchmark."""
    subprocess.run(
        [sys.executable, "-m", "tsadmin", "--data-dir", str(data), *args],
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL if quiet else None,
    )


def s3_env() -> Any:
    try:
        sys.path.insert(0, str(ROOT))
        from tests.servers import make_bucket, s3_server
    except ImportError:
        return None
    return s3_server, make_bucket


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/replication.json")
    args = parser.parse_args()
    commits = max(20, args.rows // BATCH)
    results: dict[str, Any] = {"rows": commits * BATCH}
    with tempfile.TemporaryDirectory(prefix="tsadmin-bench-repl-") as tmp:
        root = Path(tmp)

        def fresh(name: str) -> Path:
            path = root / name
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
            return path

        sync = ingest_rate(fresh("a"), "m", commits, url=None, level="sync")
        local_async = ingest_rate(fresh("b"), "m", commits, url=str(root / "s1"), level="sync")
        local_byrl = ingest_rate(fresh("c"), "m", commits, url=str(root / "s2"), level="byrl")
        results["ingest"] = {
            "sync_no_replica_rows_per_s": round(sync),
            "local_async_rows_per_s": round(local_async),
            "local_byrl_rows_per_s": round(local_byrl),
            "local_async_ratio": round(local_async / sync, 3),
            "local_byrl_ratio": round(local_byrl / sync, 3),
        }
        results["lag_local"] = lag(fresh("d"), str(root / "s3"), {})
        found = s3_env()
        if found is not None:
            s3_server, make_bucket = found
            with s3_server() as env:
                make_bucket(env, "bench")
                saved = dict(os.environ)
                os.environ.update(env)
                try:
                    s3_async = ingest_rate(
                        fresh("e"), "m", commits, url="s3://bench/e", level="sync"
                    )
                    s3_byrl = ingest_rate(
                        fresh("f"), "m", commits // 4, url="s3://bench/f", level="byrl"
                    )
                    results["ingest"].update(
                        s3_async_rows_per_s=round(s3_async),
                        s3_byrl_rows_per_s=round(s3_byrl),
                        s3_async_ratio=round(s3_async / sync, 3),
                        s3_byrl_ratio=round(s3_byrl / sync, 3),
                    )
                    results["lag_s3"] = lag(fresh("g"), "s3://bench/g", env)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
        results["apply"] = apply_and_pitr(fresh("h"), commits)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
