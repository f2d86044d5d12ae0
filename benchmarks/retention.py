"""Deletes and retention: what removing data costs, against rewriting it.

One table of ``--rows`` rows (default 1,000,000: 100 hosts, 10 daily partitions, one
compacted segment each), built in-process, then, each on a fresh copy:

* delete 1% of the rows as one host across all time (every partition holds some:
  every segment is rewritten, the worst case), and 1% as a time range inside one
  partition (one segment rewritten); the peer figure is the physical cost of
  rewriting the whole table (reading and writing every segment once), which a
  delete that rewrote everything would pay;
* expire the oldest partition (retention set, then a checkpoint): the peer figure
  is writing that one partition's segment, the least an expiry by rewriting would
  pay; ours drops the files unread.

Run: ``.venv/bin/python benchmarks/retention.py [--rows N] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import Settings, create_database, ops  # noqa: E402
from engine.db.database import Batch, Database  # noqa: E402
from engine.storage import segment  # noqa: E402
from engine.storage.manifest import load as load_manifest  # noqa: E402

DAY = 86400 * 10**9
HOSTS = 100
PARTITIONS = 10


def build(data: Path, rows: int) -> int:
    """The table; returns the start of its oldest partition (ns)."""
    create_database(data, "m", Settings.build(partition="1d"))
    today = time.time_ns() // DAY * DAY
    oldest = today - PARTITIONS * DAY
    per_partition = rows // PARTITIONS
    step = DAY // (per_partition // HOSTS + 1)
    with Database.open(data / "m", "m", background=False) as db:
        for p in range(PARTITIONS):
            for chunk in range(0, per_partition, 100_000):
                n = min(100_000, per_partition - chunk)
                index = pa.array(range(chunk, chunk + n), pa.int64())
                ts = [oldest + p * DAY + (i // HOSTS) * step for i in index.to_pylist()]
                table = pa.table(
                    {
                        "ts": pa.array(ts, pa.int64()),
                        "host": [f"h{i % HOSTS}" for i in index.to_pylist()],
                        "usage": pa.array([float(i) for i in index.to_pylist()]),
                    }
                )
                db.write([Batch("cpu", table, ["host"])])
            db.checkpoint("bench")
        db.compact()
    return oldest


def timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def full_rewrite_seconds(data: Path) -> tuple[float, float]:
    """Seconds to read and write every segment once; seconds for the oldest one."""
    manifest = load_manifest(data / "m")
    infos = sorted(manifest.tables["cpu"].segments, key=lambda s: s.partition)
    times = []
    for info in infos:
        started = time.perf_counter()
        rows = segment.read(data / "m", info)
        path = f"bench/{info.seq}.parquet"
        segment.write(
            data / "m", path, info.partition, info.seq, rows, manifest.tables["cpu"].schema.tags
        )
        times.append(time.perf_counter() - started)
    shutil.rmtree(data / "m" / "bench", ignore_errors=True)
    return sum(times), times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        oldest = build(base, args.rows)
        rewrite_all, rewrite_one = full_rewrite_seconds(base)
        results: dict[str, Any] = {
            "rows": args.rows,
            "partitions": PARTITIONS,
            "rewrite_all_s": round(rewrite_all, 3),
            "rewrite_one_partition_s": round(rewrite_one, 3),
        }

        def fresh(name: str) -> Path:
            copy = Path(tmp) / name
            shutil.copytree(base, copy)
            return copy

        def delete_case(name: str, start: int, end: str, where: dict[str, str]) -> None:
            data = fresh(name)
            seconds, report = timed(
                lambda: ops.delete_rows(
                    data, "m", "cpu", start=str(start), end=end, where=where, dry_run=False
                )
            )
            results[f"delete_1pct_{name}"] = {
                "seconds": round(seconds, 3),
                "rows": report.rows,
                "segments_rewritten": report.segments_rewritten,
                "vs_rewrite_all": round(seconds / rewrite_all, 2),
            }

        delete_case("by_host", oldest - DAY, "now+1d", {"host": "h7"})
        span = DAY // 10  # a tenth of one partition: 1% of the table
        delete_case("by_time", oldest + DAY, str(oldest + DAY + span), {})
        data = fresh("expire")
        with Database.open(data / "m", "m", background=False) as db:
            db.set_setting("retention", f"{PARTITIONS - 1}d")
            seconds, report = timed(lambda: db.checkpoint("bench"))
        results["expire_one_partition"] = {
            "seconds": round(seconds, 4),
            "rows": report.rows_deleted,
            "segments_dropped": report.segments_dropped,
            "segments_rewritten": report.segments_rewritten,
            "vs_rewrite_one_partition": round(seconds / rewrite_one, 3),
        }
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
