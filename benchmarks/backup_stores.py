"""Backup and restore of a large TSBS database to each archive store: a local directory
and an S3-protocol server on the loopback (moto), against ``cp -r && sync`` and the
disk's sequential write rate, all measured in the same run.

Run: ``make bench`` (10x its row count, at least 10,000,000 rows, so fixed costs do
not dominate) or ``.venv/bin/python benchmarks/backup_stores.py --rows N``. Prints a
table and writes ``benchmarks/results/backup_stores.json``.

The loopback S3 server is moto (pure Python, in memory): it measures our protocol's
cost (claims, multipart uploads, conditional puts, downloads, verification), not a
real object store's bandwidth.

Peer: VictoriaMetrics (Debian's ``victoria-metrics``, with ``vmbackup`` and
``vmrestore``) holding the same rows (written to its ``/write`` endpoint as line
protocol), backed up to a local directory and restored from it; compared by the time
each takes for the same rows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from backup_restore import timed, tree_bytes
from ingest_peers import _free_port
from tabulate import tabulate
from tsbs import TAGS, cpu_rows

from engine import Batch, Database, Settings, create_database
from engine.archive.backup import BackupOptions, create_backup
from engine.archive.restore import RestoreOptions, restore

MB = 1024 * 1024


def disk_write_mb_per_s(directory: Path, size: int) -> float:
    """Sequential write of ``size`` bytes in 8 MiB blocks, then fsync: the disk's limit."""
    block = os.urandom(8 * MB)
    path = directory / "disk-probe"
    started = time.perf_counter()
    with path.open("wb") as out:
        written = 0
        while written < size:
            out.write(block)
            written += len(block)
        out.flush()
        os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    path.unlink()
    return written / MB / seconds


def build_database(data: Path, rows: int) -> None:
    create_database(data, "tsbs", Settings.build(wal_level="off"))
    with Database.open(data / "tsbs", "tsbs", background=False) as db:
        for start in range(0, rows, 100_000):
            db.write([Batch("cpu", cpu_rows(start, min(100_000, rows - start)), TAGS)])
            if start % 2_000_000 == 0:
                db.checkpoint("bench")


def moto_server() -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    env = {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
    }
    os.environ.update(env)
    import boto3

    boto3.client("s3").create_bucket(Bucket="bench")
    return server, env


def victoria_metrics(root: Path, rows: int) -> dict[str, Any]:
    """vmbackup and vmrestore of the same rows, to and from a local directory."""
    if not all(shutil.which(c) for c in ("victoria-metrics", "vmbackup", "vmrestore")):
        return {"skipped": "victoria-metrics not installed (apt-get install victoria-metrics)"}
    from ingest_peers import _as_line_protocol

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    storage = root / "victoria" / "data"
    server = subprocess.Popen(
        [
            "victoria-metrics",
            f"-storageDataPath={storage}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=100y",
            "-loggerLevel=ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        for start in range(0, rows, 50_000):
            body = _as_line_protocol(cpu_rows(start, min(50_000, rows - start)))
            urllib.request.urlopen(urllib.request.Request(f"{url}/write", data=body))
        urllib.request.urlopen(f"{url}/internal/force_flush")
        backup_s, _ = timed(
            lambda: subprocess.run(
                [
                    "vmbackup",
                    f"-storageDataPath={storage}",
                    f"-snapshot.createURL={url}/snapshot/create",
                    f"-dst=fs://{root / 'vmbackup-dst'}",
                    "-loggerLevel=ERROR",
                ],
                check=True,
            )
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
    size = tree_bytes(root / "vmbackup-dst")
    subprocess.run(["sync"], check=True)
    restore_s, _ = timed(
        lambda: subprocess.run(
            [
                "vmrestore",
                f"-src=fs://{root / 'vmbackup-dst'}",
                f"-storageDataPath={root / 'vmrestore-dst'}",
                "-loggerLevel=ERROR",
            ],
            check=True,
        )
    )
    shutil.rmtree(root / "vmrestore-dst")
    shutil.rmtree(storage)
    return {
        "archive_bytes": size,
        "backup": {"seconds": backup_s, "mb_per_s": size / MB / backup_s},
        "restore": {"seconds": restore_s, "mb_per_s": size / MB / restore_s},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "backup_stores.json"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {"rows": args.rows}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        root = Path(tmp)
        data = root / "data"
        build_seconds, _ = timed(lambda: build_database(data, args.rows))
        size = tree_bytes(data / "tsbs")
        results |= {"database_bytes": size, "build_seconds": build_seconds}
        results["disk_write_mb_per_s"] = disk_write_mb_per_s(root, size)
        cp_sync_s, _ = timed(
            lambda: subprocess.run(
                f"cp -r {data / 'tsbs'} {root / 'cp'} && sync", shell=True, check=True
            )
        )
        shutil.rmtree(root / "cp")
        results["cp_r_sync"] = {"seconds": cp_sync_s, "mb_per_s": size / MB / cp_sync_s}
        server, _env = moto_server()
        try:
            for store, location in (("local", str(root / "store")), ("s3", "s3://bench/tsdb")):
                backup_s, report = timed(
                    lambda loc=location: create_backup(data, "tsbs", BackupOptions(to=loc))
                )
                restore_s, _ = timed(
                    lambda rep=report, name=store: restore(
                        data, RestoreOptions(archive=rep.archive, db=f"restored_{name}")
                    )
                )
                shutil.rmtree(data / f"restored_{store}")
                results[store] = {
                    "archive_bytes": report.bytes,
                    "backup": {"seconds": backup_s, "mb_per_s": report.bytes / MB / backup_s},
                    "restore": {"seconds": restore_s, "mb_per_s": report.bytes / MB / restore_s},
                }
        finally:
            server.terminate()
            server.wait(timeout=30)
        results["victoria_metrics"] = victoria_metrics(root, args.rows)
    print(render(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


def render(r: dict[str, Any]) -> str:
    disk, cp = r["disk_write_mb_per_s"], r["cp_r_sync"]
    rows = [
        ["disk: sequential write + fsync", "", f"{disk:,.0f} MB/s", "physical limit"],
        [
            "cp -r && sync of the database",
            f"{cp['seconds']:.2f} s",
            f"{cp['mb_per_s']:,.0f} MB/s",
            f"{cp['mb_per_s'] / disk:.2f}x disk",
        ],
    ]
    for store in ("local", "s3"):
        for what in ("backup", "restore"):
            v = r[store][what]
            rows.append(
                [
                    f"{what} {'to' if what == 'backup' else 'from'} the {store} store",
                    f"{v['seconds']:.2f} s",
                    f"{v['mb_per_s']:,.0f} MB/s",
                    f"{cp['seconds'] / v['seconds']:.2f}x cp+sync, "
                    f"{v['mb_per_s'] / disk:.2f}x disk",
                ]
            )
    vm = r.get("victoria_metrics", {})
    if "restore" in vm:
        for what in ("backup", "restore"):
            v, ours = vm[what], r["local"][what]
            rows.append(
                [
                    f"{'vmbackup' if what == 'backup' else 'vmrestore'} (VictoriaMetrics), "
                    "local directory",
                    f"{v['seconds']:.2f} s",
                    f"{v['mb_per_s']:,.0f} MB/s",
                    f"ours {v['seconds'] / ours['seconds']:.2f}x its speed (same rows)",
                ]
            )
    head = (
        f"{r['rows']:,} TSBS cpu rows; database {r['database_bytes'] / MB:.0f} MB, "
        f"archive {r['local']['archive_bytes'] / MB:.0f} MB\n"
    )
    return head + str(tabulate(rows, headers=["operation", "time", "throughput", "ratio"]))


if __name__ == "__main__":
    main()
