"""Bounded cost per input: wide lines (cost per tag key as lines widen) and how much of a
table ``select --limit`` reads.

Run: ``make bench`` or ``.venv/bin/python benchmarks/bounded_cost.py [--rows N]``.
Linear schema growth shows as a per-key cost that stays flat from 1,000 to 10,000 keys
(ratio near 1; a quadratic cost would give 10). ``select --limit 1`` is compared with a
full read of the same table, in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate
from tsbs import TAGS, cpu_rows

from engine import Batch, Database, Settings, create_database
from engine.ingest.pipeline import IngestOptions, ingest_lp

T0 = 1_700_000_000_000_000_000
WIDTHS = (1_000, 2_000, 5_000, 10_000)


def wide_line(keys: int) -> bytes:
    tags = ",".join(f"tag_key_{i}=value_{i}" for i in range(keys))
    return f"wide,{tags} f=1i {T0}\n".encode()


def wide_lines(directory: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keys in WIDTHS:
        settings = Settings.build(max_tags_per_series=20_000)
        db_dir = create_database(directory, f"wide{keys}", settings)
        started = time.perf_counter()
        with Database.open(db_dir, f"wide{keys}", background=False) as db:
            ingest_lp(db, io.BytesIO(wide_line(keys)), "bench", IngestOptions())
        ingest_s = time.perf_counter() - started
        started = time.perf_counter()
        Database.open(db_dir, f"wide{keys}", readonly=True).scan("wide", limit=1)
        select_s = time.perf_counter() - started
        out[str(keys)] = {
            "ingest_s": ingest_s,
            "select_s": select_s,
            "ingest_us_per_key": ingest_s / keys * 1e6,
            "select_us_per_key": select_s / keys * 1e6,
        }
    return out


def select_limit(directory: Path, rows: int) -> dict[str, Any]:
    db_dir = create_database(directory, "tsbs", Settings.build())
    with Database.open(db_dir, "tsbs", background=False) as db:
        for start in range(0, rows, 100_000):
            table = cpu_rows(start, min(100_000, rows - start))
            db.write([Batch("cpu", table, TAGS)])
    reader = Database.open(db_dir, "tsbs", readonly=True)
    started = time.perf_counter()
    full = reader.scan("cpu").num_rows
    full_s = time.perf_counter() - started
    started = time.perf_counter()
    reader.scan("cpu", limit=1)
    limit_s = time.perf_counter() - started
    return {"rows": full, "full_s": full_s, "limit1_s": limit_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "bounded_cost.json"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        results["wide_lines"] = wide_lines(Path(tmp))
        results["select_limit"] = select_limit(Path(tmp), args.rows)
    wide = results["wide_lines"]
    first, last = wide[str(WIDTHS[0])], wide[str(WIDTHS[-1])]
    results["ingest_per_key_ratio"] = last["ingest_us_per_key"] / first["ingest_us_per_key"]
    results["select_per_key_ratio"] = last["select_us_per_key"] / first["select_us_per_key"]
    sel = results["select_limit"]
    table = [
        [
            f"one line with {k} tag keys",
            f"{v['ingest_s']:.3f} s ingest, {v['select_s']:.3f} s select",
            f"{v['ingest_us_per_key']:.1f} / {v['select_us_per_key']:.1f} us per key",
        ]
        for k, v in wide.items()
    ]
    table.append(
        [
            "per-key cost, 10,000 vs 1,000 keys",
            f"ingest {results['ingest_per_key_ratio']:.2f}x, "
            f"select {results['select_per_key_ratio']:.2f}x",
            "1 = linear, 10 = quadratic",
        ]
    )
    table.append(
        [
            f"select --limit 1 of {sel['rows']:,} rows",
            f"{sel['limit1_s']:.3f} s",
            f"full read {sel['full_s']:.3f} s ({sel['full_s'] / sel['limit1_s']:.0f}x)",
        ]
    )
    print(tabulate(table, headers=["measure", "figure", "detail"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
