"""The write endpoint under concurrent HTTP clients, against InfluxDB 1.6.

The same client (asyncio + aiohttp in this process, one keep-alive connection per
client) posts the same TSBS cpu-only rows as 100-line line-protocol batches to
``/write`` with 1, 16 and then 64 clients at once, each waiting for its answer before
sending its next batch, to:

- ``tsadmin serve`` on a database at ``sync`` (every acknowledged batch fsynced),
- the same at ``flush`` (fsync once a second): the group-commit target is sync at
  least 0.7x flush (TDengine's claim for many writers),
- InfluxDB 1.6 (Debian package) at its default ``wal-fsync-delay`` (0s: it fsyncs
  every write), the peer to beat;
- VictoriaMetrics 1.79 (Debian package ``victoria-metrics``) on its InfluxDB-compatible
  ``/write``, which answers before anything is fsynced.

Every answer must be 204; a run with any other answer is reported as failed.

Then the same server, at ``sync`` with its default memory ceiling, takes batches of
1,000 lines (every TSBS host once, as a Telegraf agent in front of 1,000 hosts sends
them) from 16 and 64 clients, and the run reports how many answers were 503 "over the
memory ceiling" (target: none with the default; a client that does not retry would
lose those batches).

Run: ``make bench`` or ``.venv/bin/python benchmarks/serve.py [--rows N]``.
Writes ``benchmarks/results/serve.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from ingest_peers import (
    _as_line_protocol,
    _free_port,
    influxd_running,
    victoria_metrics_running,
)
from tabulate import tabulate
from tsbs import cpu_rows

BATCH_LINES = 100
HOST_BATCH_LINES = 1_000  # tsbs.HOSTS: one line per host
CLIENTS = (1, 16, 64)


def batches(rows: int, lines_per_batch: int = BATCH_LINES) -> list[bytes]:
    bodies = []
    for start in range(0, rows, 10_000):
        text = _as_line_protocol(cpu_rows(start, min(10_000, rows - start)))
        lines = text.splitlines(keepends=True)
        bodies += [
            b"".join(lines[i : i + lines_per_batch]) for i in range(0, len(lines), lines_per_batch)
        ]
    return bodies


async def _drive(url: str, bodies: list[bytes], clients: int) -> tuple[float, Counter[int]]:
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(mine: list[bytes]) -> None:
            for body in mine:
                async with session.post(url, data=body) as response:
                    await response.read()
                    statuses[response.status] += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(bodies[k::clients]) for k in range(clients)))
        return time.perf_counter() - started, statuses


def drive(url: str, bodies: list[bytes], clients: int) -> dict[str, Any]:
    seconds, statuses = asyncio.run(_drive(url, bodies, clients))
    rows = sum(body.count(b"\n") for body in bodies)
    result: dict[str, Any] = {
        "clients": clients,
        "requests": len(bodies),
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "requests_per_s": round(len(bodies) / seconds),
    }
    result["over_ceiling_503"] = statuses.get(503, 0)
    if set(statuses) != {204}:
        result["failed"] = f"answers other than 204: {dict(statuses)}"
    return result


def ours(
    work: Path,
    level: str,
    bodies: list[bytes],
    clients: int,
    replica: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``tsadmin serve`` at ``level``; with ``replica``, shipping to that store (byrl:
    every acknowledgement waits for the store)."""
    data = work / f"ours_{level}_{clients}"
    tsadmin = str(Path(sys.executable).parent / "tsadmin")
    base = [tsadmin, "--data-dir", str(data), "--quiet"]
    environ = {**os.environ, **(env or {})}
    create_level = "sync" if level == "byrl" else level
    subprocess.run([*base, "db", "create", "bench", "--wal-level", create_level], check=True)
    if replica is not None:
        subprocess.run([*base, "replica", "add", "bench", replica], check=True, env=environ)
        subprocess.run([*base, "replicate", "bench", "--once"], check=True, env=environ)
    if level == "byrl":
        subprocess.run([*base, "config", "set", "bench", "wal_level", "byrl"], check=True)
    port = _free_port()
    server = subprocess.Popen([*base, "serve", "--bind", f"127.0.0.1:{port}"], env=environ)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/ping")
        result = drive(f"{url}/write?db=bench", bodies, clients)
        result["fsyncs"] = _metric(f"{url}/metrics", "tsadmin_wal_fsyncs_total")
        result["commits"] = _metric(f"{url}/metrics", "tsadmin_commits_total")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    shutil.rmtree(data)
    return result


def influxdb(work: Path, bodies: list[bytes], clients: int) -> dict[str, Any]:
    if shutil.which("influxd") is None:
        return {"skipped": "influxd not installed (apt-get install influxdb)"}
    with influxd_running(work / f"influx_{clients}", None) as url:
        return drive(f"{url}/write?db=bench&precision=ns", bodies, clients)


def victoria_metrics(work: Path, bodies: list[bytes], clients: int) -> dict[str, Any]:
    if shutil.which("victoria-metrics") is None:
        return {"skipped": "victoria-metrics not installed (apt-get install victoria-metrics)"}
    with victoria_metrics_running(work / f"victoria_{clients}") as url:
        return drive(f"{url}/write?precision=ns", bodies, clients)


def _wait_for(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def _metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/serve.json")
    args = parser.parse_args()
    bodies = batches(args.rows)
    results: dict[str, Any] = {"batch_lines": BATCH_LINES, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="tsadmin-bench-serve-") as tmp:
        work = Path(tmp)
        for clients in CLIENTS:
            results["runs"][str(clients)] = {
                "sync": ours(work, "sync", bodies, clients),
                "flush": ours(work, "flush", bodies, clients),
                "influxdb": influxdb(work, bodies, clients),
                "victoria_metrics": victoria_metrics(work, bodies, clients),
            }
        host_bodies = batches(args.rows, HOST_BATCH_LINES)
        results["host_batch_lines"] = HOST_BATCH_LINES
        results["host_batches"] = {
            str(clients): ours(work, "sync", host_bodies, clients)
            for clients in CLIENTS
            if clients > 1  # a Telegraf agent per 1,000 hosts: many agents at once
        }
    for run in results["runs"].values():
        sync, flush, peer = run["sync"], run["flush"], run["influxdb"]
        run["sync_vs_flush"] = round(sync["rows_per_s"] / flush["rows_per_s"], 2)
        if "rows_per_s" in peer:
            run["sync_vs_influxdb"] = round(sync["rows_per_s"] / peer["rows_per_s"], 2)
        victoria = run.get("victoria_metrics", {})
        if "rows_per_s" in victoria:
            run["sync_vs_victoria_metrics"] = round(sync["rows_per_s"] / victoria["rows_per_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))


def render(results: dict[str, Any]) -> str:
    rows = []
    for clients, run in results["runs"].items():
        for name in ("sync", "flush", "influxdb", "victoria_metrics"):
            if name not in run:
                continue
            r = run[name]
            figure = r.get("skipped") or (
                f"{r['rows_per_s']:,} rows/s ({r['requests_per_s']:,} req/s)"
            )
            if "failed" in r:
                figure += f" FAILED: {r['failed']}"
            per_fsync = ""
            if r.get("fsyncs"):
                per_fsync = f"{r['requests'] / r['fsyncs']:.1f} requests per fsync"
            rows.append([f"{clients} clients, {name}", figure, per_fsync])
        peers = [
            f"sync/{name} {run[key]:.2f}x"
            for key, name in (
                ("sync_vs_influxdb", "InfluxDB"),
                ("sync_vs_victoria_metrics", "VictoriaMetrics"),
            )
            if key in run
        ]
        rows.append(
            [
                f"{clients} clients, ratios",
                f"sync/flush {run['sync_vs_flush']:.2f}x",
                ", ".join(peers),
            ]
        )
    for clients, r in results.get("host_batches", {}).items():
        rows.append(
            [
                f"{clients} clients x {results['host_batch_lines']:,}-line batches, sync",
                f"{r['rows_per_s']:,} rows/s",
                f"{r['over_ceiling_503']} answers 503 (over the memory ceiling)",
            ]
        )
    header = f"write endpoint, {results['batch_lines']}-line batches, pid {os.getpid()}"
    return header + "\n" + str(tabulate(rows, headers=["run", "throughput", ""]))


if __name__ == "__main__":
    main()
