"""Reads against DuckDB on the same data (issue 27): ``select`` of one host over one hour
and of one host over the whole range, against DuckDB reading the full backup's Parquet
files of the same database, both as new processes writing CSV to /dev/null.

The database is fed TSBS cpu-only rows (1,000 hosts, one-hour partitions) by the
generator of ``scale.py`` piped into ``tsadmin ingest lp``; a full backup then holds
the same rows as Parquet files. Each query runs ``--runs`` times, ours and DuckDB's
alternating; the median is reported, and the ratio ours / DuckDB's (target <= 1.5).

Run: ``.venv/bin/python benchmarks/reads.py [--rows 2000000]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TSADMIN = str(Path(sys.executable).with_name("tsadmin"))
START_NS = 1_700_000_000_000_000_000  # scale.py's first timestamp
HOUR_NS = 3600 * 10**9
HOST = "hostname_7"
DB = "reads"

DUCKDB_QUERY = """
import sys, duckdb
files, host, low, high = sys.argv[1:5]
where = f"hostname = '{host}'"
if low:
    where += f" AND ts >= to_timestamp({low} // 10**9) AND ts < to_timestamp({high} // 10**9)"
duckdb.sql(f"COPY (SELECT * FROM read_parquet('{files}') WHERE {where} ORDER BY ts) "
           "TO '/dev/null' (FORMAT CSV)")
"""


def timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def load(data: Path, store: Path, rows: int) -> None:
    base = [TSADMIN, "--data-dir", str(data), "--quiet"]
    subprocess.run([*base, "db", "create", DB, "--partition", "1h"], check=True)
    generator = subprocess.Popen(
        [sys.executable, str(HERE / "scale.py"), "--generate", "0", str(rows)],
        stdout=subprocess.PIPE,
    )
    subprocess.run([*base, "ingest", "lp", DB, "-"], stdin=generator.stdout, check=True)
    generator.wait()
    backup = [*base, "backup", "create", DB, "--to", str(store), "--name", "full"]
    subprocess.run(backup, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reads.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tsadmin-reads-") as work:
        data, store = Path(work) / "data", Path(work) / "store"
        load(data, store, args.rows)
        files = str(store / "full" / "cpu" / "*.parquet")
        hour = (START_NS + 5 * HOUR_NS, START_NS + 6 * HOUR_NS)
        queries = {
            "one host, one hour": (list(map(str, hour))),
            "one host, all": ["", ""],
        }
        report: dict[str, Any] = {
            "rows": args.rows,
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "runs": args.runs,
            "queries": {},
        }
        for name, (low, high) in queries.items():
            ours = [TSADMIN, "--data-dir", str(data), "--format", "csv", "select", DB, "cpu"]
            ours += ["--where", f"hostname={HOST}"] + (["--start", low, "--end", high] * bool(low))
            peer = [sys.executable, "-c", DUCKDB_QUERY, files, HOST, low, high]
            timings: dict[str, list[float]] = {"tsadmin": [], "duckdb": []}
            for _ in range(args.runs):
                timings["tsadmin"].append(timed(ours))
                timings["duckdb"].append(timed(peer))
            medians = {k: round(statistics.median(v), 3) for k, v in timings.items()}
            ratio = round(medians["tsadmin"] / medians["duckdb"], 2)
            report["queries"][name] = {**medians, "ratio": ratio}
            said = f"tsadmin {medians['tsadmin']:.3f} s, DuckDB {medians['duckdb']:.3f} s"
            print(f"{name:<22} {said}: {ratio:.2f}x (target <= 1.5)", flush=True)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
