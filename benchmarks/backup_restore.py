"""Backup and restore speed on 1,000,000 TSBS cpu rows, against cp -r and DuckDB's COPY.

Run: ``make bench`` or ``.venv/bin/python benchmarks/backup_restore.py [--rows N]``.
All in one run, on the same checkpointed database, with a warm page cache for
every contender. Prints a table and writes ``benchmarks/results/backup_restore.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
from tabulate import tabulate
from tsbs import TAGS, cpu_rows

from engine import Batch, Database, Settings, create_database
from engine.archive.backup import BackupOptions, create_backup
from engine.archive.restore import RestoreOptions, restore


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "backup_restore.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        data = root / "data"
        create_database(data, "tsbs", Settings.build())
        with Database.open(data / "tsbs", "tsbs", background=False) as db:
            for start in range(0, args.rows, 50_000):
                db.write([Batch("cpu", cpu_rows(start, min(50_000, args.rows - start)), TAGS)])
        size = tree_bytes(data / "tsbs")
        tree_bytes(data / "tsbs")  # warm
        cp_s, _ = timed(
            lambda: subprocess.run(["cp", "-r", str(data / "tsbs"), str(root / "cp")], check=True)
        )
        subprocess.run(["sync"], check=True)
        cp_sync_s, _ = timed(
            lambda: subprocess.run(
                f"cp -r {data / 'tsbs'} {root / 'cp2'} && sync", shell=True, check=True
            )
        )
        backup_s, report = timed(
            lambda: create_backup(data, "tsbs", BackupOptions(to=str(root / "bk")))
        )
        archive = Path(report.archive)
        restore_s, _ = timed(
            lambda: restore(data, RestoreOptions(archive=str(archive), db="restored"))
        )
        files = sorted(str(p) for p in (data / "tsbs").rglob("*.parquet"))
        con = duckdb.connect(str(root / "duck.db"))
        con.execute(f"CREATE TABLE cpu AS SELECT * FROM read_parquet({files})")
        duck_s, _ = timed(
            lambda: con.execute(
                f"COPY cpu TO '{root / 'duck.parquet'}' (FORMAT parquet, COMPRESSION zstd)"
            )
        )
        duck_bytes = (root / "duck.parquet").stat().st_size
        shutil.rmtree(root / "cp")
        shutil.rmtree(root / "cp2")
    mb = 1024 * 1024
    results = {
        "rows": args.rows,
        "database_bytes": size,
        "archive_bytes": report.bytes,
        "files_copied": report.files_copied,
        "files_written": report.files_written,
        "cp_r": {"seconds": cp_s, "mb_per_s": size / mb / cp_s},
        "cp_r_sync": {"seconds": cp_sync_s, "mb_per_s": size / mb / cp_sync_s},
        "backup": {
            "seconds": backup_s,
            "mb_per_s": report.bytes / mb / backup_s,
            "rows_per_s": args.rows / backup_s,
        },
        "restore": {
            "seconds": restore_s,
            "mb_per_s": report.bytes / mb / restore_s,
            "rows_per_s": args.rows / restore_s,
        },
        "duckdb_copy_zstd": {
            "seconds": duck_s,
            "bytes": duck_bytes,
            "rows_per_s": args.rows / duck_s,
        },
    }

    def ratios(seconds: float) -> str:
        return (
            f"{cp_s / seconds:.2f}x cp -r; {cp_sync_s / seconds:.2f}x cp+sync; "
            f"{duck_s / seconds:.1f}x DuckDB"
        )

    table = [
        [
            "cp -r of the database directory",
            f"{cp_s:.3f} s",
            f"{size / mb / cp_s:,.0f} MB/s",
            "1.00x",
        ],
        [
            "cp -r && sync (durable, as a backup is)",
            f"{cp_sync_s:.3f} s",
            f"{size / mb / cp_sync_s:,.0f} MB/s",
            f"{cp_s / cp_sync_s:.2f}x cp -r",
        ],
        [
            "tsadmin backup create (fsynced, verified)",
            f"{backup_s:.3f} s",
            f"{report.bytes / mb / backup_s:,.0f} MB/s",
            ratios(backup_s),
        ],
        [
            "tsadmin restore (verified, fsynced)",
            f"{restore_s:.3f} s",
            f"{report.bytes / mb / restore_s:,.0f} MB/s",
            ratios(restore_s),
        ],
        [
            "DuckDB COPY TO parquet (zstd)",
            f"{duck_s:.3f} s",
            f"{duck_bytes / mb / duck_s:,.0f} MB/s",
            f"{args.rows / duck_s:,.0f} rows/s",
        ],
    ]
    print(
        f"{args.rows:,} TSBS cpu rows; database {size / mb:.1f} MB, "
        f"archive {report.bytes / mb:.1f} MB "
        f"({report.files_copied} files copied as they are, {report.files_written} written)"
    )
    print(tabulate(table, headers=["operation", "time", "throughput", "ratio (higher is faster)"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
