"""Many series, many partitions, many tables: what a database's width costs.

Issue 27, item 3. Two databases, one ten times the other in every direction:

- ``cpu``: SERIES series (a host tag and a cpu tag, ten cpus per host), two points
  each, in one daily partition;
- ``daily``: one series with a point a day for PARTITIONS days (a segment each);
- TABLES small tables ``t0000``.. of ten rows each.

At full size that is 1,000,000 series, 1,000 daily partitions and 1,000 tables
(about 2,000 segments in the manifest). The databases are built through the engine's
API in a child process; then every command is a new process, measured like
``benchmarks/scale.py`` does (wall time, the child's own peak RSS): ``db list``,
``db stats``, ``table list``, an ingest of 1,000 rows into ``cpu`` (its checkpoint at
close writes the manifest), ``select --limit 10`` of ``cpu`` and of ``daily``, a
whole small table, a full backup, then 1,000 more rows and an incremental backup.

Reported: both sizes and the ratio of the large to the small. A command that touches
everything grows at most tenfold (linear); one that touches a fixed amount should not
grow with the width. Also the manifest's size and the time to load it.

Run: ``python benchmarks/wide.py`` (``--scale 0.1,1``); results in
``benchmarks/results/wide.{json,md}``. Not part of ``make bench``: the large build
takes a few minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from scale import TSADMIN, Measured, measure, run_header, write_results

RESULTS = Path(__file__).parent / "results"
DB = "wide"
DAY_NS = 86_400 * 10**9
T0 = 1_700_000_000 * 10**9 // DAY_NS * DAY_NS
FULL = {"series": 1_000_000, "partitions": 1_000, "tables": 1_000}


def build(data: Path, factor: float) -> None:
    """The database at ``factor`` of full width (run in a child: this process stays
    free of pyarrow, so a measured child's peak RSS is its own)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from engine import Database
    from engine.db.database import Batch
    from engine.db.datadir import create_database
    from engine.settings import Settings

    series, partitions, tables = (int(FULL[k] * factor) for k in FULL)
    db_dir = create_database(data, DB, Settings.build(partition="1d", wal_level="off"))
    with Database.open(db_dir, DB, background=False) as db:
        for first in range(0, series, 250_000):
            n = pa.array(range(first, min(series, first + 250_000)), pa.int64())
            for step in range(2):
                rows = pa.table(
                    {
                        "ts": pa.repeat(pa.scalar(T0 + step * 10**10, pa.int64()), len(n)),
                        "host": pc.binary_join_element_wise(
                            "host_", pc.cast(pc.divide(n, 10), pa.string()), ""
                        ),
                        "cpu": pc.binary_join_element_wise(
                            "cpu", pc.cast(pc.remainder(n, 10), pa.string()), ""
                        ),
                        "usage": pc.cast(n, pa.float64()),
                    }
                )
                db.write([Batch("cpu", rows, ["cpu", "host"])])
            db.checkpoint("build")
        days = pa.array(range(partitions), pa.int64())
        daily = pa.table(
            {
                "ts": pc.add(pc.multiply(days, DAY_NS), T0 - (partitions - 1) * DAY_NS),
                "site": pa.array(["a"] * partitions),
                "value": pc.cast(days, pa.float64()),
            }
        )
        db.write([Batch("daily", daily, ["site"])])
        small = pa.table(
            {
                "ts": pa.array([T0 + i * 10**9 for i in range(10)], pa.int64()),
                "host": pa.array(["h"] * 10),
                "value": pa.array([float(i) for i in range(10)]),
            }
        )
        for first in range(0, tables, 100):
            db.write(
                [
                    Batch(f"t{t:04d}", small, ["host"])
                    for t in range(first, min(tables, first + 100))
                ]
            )
        db.checkpoint("build")
    manifest = db_dir / "manifest.json"
    started = time.perf_counter()
    with Database.open(db_dir, DB, readonly=True) as reader:
        segments = sum(len(t.segments) for t in reader.view().manifest.tables.values())
    print(
        json.dumps(
            {
                "segments": segments,
                "manifest_bytes": manifest.stat().st_size,
                "open_seconds": round(time.perf_counter() - started, 3),
            }
        )
    )


def change(path: Path, first: int) -> Path:
    """1,000 new rows for ``cpu`` as line protocol (100 hosts, ten cpus)."""
    lines = [
        f"cpu,cpu=cpu{i % 10},host=host_{i // 10} usage={i}.5 {T0 + 2 * DAY_NS // 3 + first + i}"
        for i in range(1000)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def one_width(factor: float, work: Path, cap_kb: int) -> dict[str, Any]:
    data, store = work / f"data-{factor}", work / f"backups-{factor}"
    built = subprocess.run(
        [sys.executable, __file__, "--build", str(data), str(factor)],
        check=True,
        capture_output=True,
        text=True,
    )
    shape = json.loads(built.stdout.strip().splitlines()[-1])
    shape.update({k: int(v * factor) for k, v in FULL.items()})
    base = ["--data-dir", str(data)]
    out: list[Measured] = []

    def run(name: str, *args: str) -> None:
        result = measure(name, [*base, *args], 1, cap_kb)
        out.append(result)
        print(f"  {name:<32} {result.seconds:8.2f} s {result.peak_rss_mb:8.0f} MB", flush=True)
        if result.exit:
            print(f"    exit {result.exit}", flush=True)

    run("db list", "db", "list")
    run("db stats", "db", "stats", DB)
    run("table list", "table", "list", DB)
    run("ingest 1,000 rows + checkpoint", "ingest", "lp", DB, str(change(work / "a.lp", 0)))
    run("checkpoint", "checkpoint", DB)
    run("select cpu --limit 10", "select", DB, "cpu", "--limit", "10")
    run("select daily --limit 10", "select", DB, "daily", "--limit", "10")
    run("select t0000 (10 rows)", "select", DB, "t0000")
    run("backup create (full)", "backup", "create", DB, "--to", str(store), "--name", "full")
    run("ingest 1,000 more rows", "ingest", "lp", DB, str(change(work / "b.lp", 5000)))
    run("backup create --incremental", "backup", "create", DB, "--to", str(store),
        "--incremental", "--name", "incr")  # fmt: skip
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    return {"shape": shape, "commands": [asdict(m) for m in out]}


def render(report: dict[str, Any]) -> str:
    small, large = (report["widths"][k] for k in sorted(report["widths"], key=float))
    lines = [
        f"# Width: many series, partitions and tables ({report['date']}, {report['machine']})",
        "",
        f"Run: `{report['command']}`. Each command is a new process: wall seconds and its own "
        "peak RSS. Growth is large / small; the large database is ten times the small one in "
        "series, partitions and tables, so a command linear in what it touches grows at most "
        "10x.",
        "",
        "| | small | large |",
        "|---|---|---|",
    ]
    for key in ("series", "partitions", "tables", "segments", "manifest_bytes", "open_seconds"):
        lines.append(f"| {key} | {small['shape'][key]:,} | {large['shape'][key]:,} |")
    lines += [
        "",
        "| command | small | large | time growth | RSS growth |",
        "|---|---|---|---|---|",
    ]
    for a, b in zip(small["commands"], large["commands"], strict=True):
        lines.append(
            f"| {a['command']} | {a['seconds']:.2f} s, {a['peak_rss_mb']:.0f} MB "
            f"| {b['seconds']:.2f} s, {b['peak_rss_mb']:.0f} MB "
            f"| {b['seconds'] / a['seconds']:.2f}x | {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    if sys.argv[1:2] == ["--build"]:
        build(Path(sys.argv[2]), float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="0.1,1", help="two comma-separated widths")
    parser.add_argument("--max-rss-gb", type=float, default=12.0)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--out", type=Path, default=RESULTS / "wide.json")
    args = parser.parse_args()
    factors = [float(x) for x in args.scale.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tsadmin-wide-", dir=args.work))
    report: dict[str, Any] = {
        **run_header(),
        "command": "python benchmarks/wide.py --scale " + args.scale,
        "tsadmin": TSADMIN,
        "widths": {},
    }
    try:
        for factor in factors:
            print(f"width {factor}", flush=True)
            report["widths"][str(factor)] = one_width(
                factor, work, int(args.max_rss_gb * 1024 * 1024)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_results(args.out, report, render(report))


if __name__ == "__main__":
    main()
