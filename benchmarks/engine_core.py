"""Engine core figures: ingest per wal_level, group commit, recovery; with the disk's limits.

Run: ``make bench`` or ``.venv/bin/python benchmarks/engine_core.py [--rows N]``.
Prints a table and writes ``benchmarks/results/engine_core.json``. Figures on a
shared machine vary by 20-30 % run to run: compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate
from tsbs import FIELDS, TAGS, cpu_rows

from engine import Batch, Database, Settings, create_database
from engine.db import maintenance


def disk_fsync_limit(directory: Path, count: int = 500) -> dict[str, float]:
    """Small append + fsync latency and rate: the physical limit of sync commits."""
    path = directory / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    latencies = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            os.write(fd, b"x" * 128)
            os.fsync(fd)
            latencies.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink()
    latencies.sort()
    return {
        "median_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1e3,
        "fsyncs_per_s": count / sum(latencies),
    }


def disk_sequential_write(directory: Path, megabytes: int = 256) -> dict[str, float]:
    """Sequential 1 MiB writes then one fsync: the ceiling for segment and archive writes."""
    path = directory / "sequential.probe"
    block = os.urandom(1 << 20)
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(megabytes):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    path.unlink()
    return {"mb_per_s": megabytes / elapsed, "megabytes": megabytes}


def ingest(directory: Path, level: str, rows: int, batch_rows: int) -> dict[str, float]:
    name = f"ing_{level}"
    create_database(directory, name, Settings.build(wal_level=level, wal_fsync_period="1000"))
    batches = [Batch("cpu", cpu_rows(i, batch_rows), TAGS) for i in range(0, rows, batch_rows)]
    db = Database.open(directory / name, name, background=False)
    started = time.perf_counter()
    for batch in batches:
        db.write([batch])
    elapsed = time.perf_counter() - started
    db.close()
    return {"rows_per_s": rows / elapsed, "values_per_s": rows * len(FIELDS) / elapsed}


def group_commit(directory: Path, writers: int, commits_each: int) -> dict[str, float]:
    name = f"gc_{writers}"
    create_database(directory, name, Settings.build(wal_level="sync"))
    db = Database.open(directory / name, name, background=False)
    db.write([Batch("cpu", cpu_rows(0, 1), TAGS)])
    prepared = [
        [
            Batch("cpu", cpu_rows((w * commits_each + i) * 100, 100), TAGS)
            for i in range(commits_each)
        ]
        for w in range(writers)
    ]
    barrier = threading.Barrier(writers + 1)

    def run(batches: list[Batch]) -> None:
        barrier.wait()
        for batch in batches:
            db.write([batch])

    threads = [threading.Thread(target=run, args=(p,)) for p in prepared]
    for t in threads:
        t.start()
    fsyncs = db.fsync_count
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    fsyncs = db.fsync_count - fsyncs
    db.close()
    commits = writers * commits_each
    return {"commits_per_s": commits / elapsed, "commits_per_fsync": commits / max(fsyncs, 1)}


def recovery(directory: Path, rows: int, batch_rows: int) -> dict[str, float]:
    """Reopen after a kill with every row in the WAL, then checkpoint them all at close."""
    name = "rec"
    create_database(directory, name, Settings.build(wal_level="sync"))
    # The size triggers would checkpoint long before 1,000,000 rows: lift them while
    # writing, so the WAL holds every row as the measure asks.
    limits = maintenance.WAL_MAX_BYTES, maintenance.MEMTABLE_MAX_BYTES
    maintenance.WAL_MAX_BYTES = maintenance.MEMTABLE_MAX_BYTES = 1 << 40
    try:
        db = Database.open(directory / name, name, background=False)
        for i in range(0, rows, batch_rows):
            db.write([Batch("cpu", cpu_rows(i, batch_rows), TAGS)])
        db.abandon()  # as if killed: everything is in the WAL
    finally:
        maintenance.WAL_MAX_BYTES, maintenance.MEMTABLE_MAX_BYTES = limits
    started = time.perf_counter()
    reopened = Database.open(directory / name, name, background=False)
    elapsed = time.perf_counter() - started
    report = reopened.recovery
    ckpt_started = time.perf_counter()
    reopened.close()
    return {
        "rows": report.rows_applied,
        "rows_per_s": report.rows_applied / elapsed,
        "seconds": elapsed,
        "checkpoint_s": time.perf_counter() - ckpt_started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "engine_core.json"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"rows": args.rows, "batch_rows": 5000}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        directory = Path(tmp)
        results["disk"] = disk_fsync_limit(directory)
        results["disk_sequential"] = disk_sequential_write(directory)
        results["ingest"] = {
            lvl: ingest(directory, lvl, args.rows, 5000) for lvl in ("off", "sync", "flush")
        }
        results["group_commit"] = {
            n: group_commit(directory, n, max(20, 320 // n)) for n in (1, 4, 16)
        }
        results["recovery"] = recovery(directory, args.rows, 5000)
    ing, gc, disk = results["ingest"], results["group_commit"], results["disk"]
    rows = [
        [
            "disk: sequential 1 MiB writes + final fsync",
            f"{results['disk_sequential']['mb_per_s']:,.0f} MB/s",
            f"{results['disk_sequential']['megabytes']} MiB",
            "",
        ],
        [
            "disk: 128 B append + fsync",
            f"{disk['fsyncs_per_s']:,.0f} fsyncs/s",
            f"median {disk['median_ms']:.2f} ms, p99 {disk['p99_ms']:.2f} ms",
            "",
        ],
        *[
            [
                f"ingest wal_level={lvl}, 5,000-row batches",
                f"{v['rows_per_s']:,.0f} rows/s",
                f"{v['values_per_s']:,.0f} values/s",
                f"{v['rows_per_s'] / ing['off']['rows_per_s']:.2f}x off",
            ]
            for lvl, v in ing.items()
        ],
        *[
            [
                f"group commit, sync, {n} writer(s) x 100-row batches",
                f"{v['commits_per_s']:,.0f} commits/s",
                f"{v['commits_per_fsync']:.1f} commits per fsync",
                f"{v['commits_per_s'] / gc[1]['commits_per_s']:.2f}x 1 writer; "
                f"{v['commits_per_s'] / disk['fsyncs_per_s']:.2f}x disk fsyncs/s",
            ]
            for n, v in gc.items()
        ],
        [
            f"recovery replay of {results['recovery']['rows']:,} rows",
            f"{results['recovery']['rows_per_s']:,.0f} rows/s",
            f"{results['recovery']['seconds']:.2f} s",
            f"{results['recovery']['rows_per_s'] / ing['sync']['rows_per_s']:.1f}x sync ingest",
        ],
        [
            f"checkpoint of those {results['recovery']['rows']:,} rows (at close)",
            f"{results['recovery']['checkpoint_s']:.2f} s",
            f"{results['recovery']['rows'] / results['recovery']['checkpoint_s']:,.0f} rows/s",
            "",
        ],
    ]
    print(tabulate(rows, headers=["measure", "figure", "detail", "ratio"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
