"""Ingest speed against peers, on the same TSBS cpu-only data, in one run.

Ours: ``tsadmin ingest lp`` and ``tsadmin ingest csv`` (the real CLI, 5,000-row
batches) at each wal_level, with peak RSS. Peers: InfluxDB 1.6 (Debian package
``influxdb``, started here on 127.0.0.1 with a temporary data dir, fed the same
line-protocol file over HTTP ``/write`` in 5,000-line batches, with its default
``wal-fsync-delay`` of 0s), VictoriaMetrics 1.79 (Debian package ``victoria-metrics``,
started the same way, fed the same batches on its InfluxDB-compatible ``/write``; it
answers before anything is fsynced), SQLite in WAL mode with synchronous FULL and NORMAL
(5,000-row transactions), DuckDB loading the same CSV into a persistent table.

Run: ``make bench`` or ``.venv/bin/python benchmarks/ingest_peers.py [--rows N]``.
Needs ``influxd`` on PATH for the InfluxDB row (``apt-get install influxdb``);
without it that row says so. Writes ``benchmarks/results/ingest_peers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tabulate import tabulate
from tsbs import FIELDS, HOSTS, TAGS, cpu_rows

CHUNK = 50_000
FEW_HOSTS = 100


def write_inputs(directory: Path, rows: int, hosts: int = HOSTS) -> tuple[Path, Path]:
    """The same rows (of ``hosts`` hosts) as line protocol and as CSV."""
    lp_path, csv_path = directory / f"cpu-{hosts}.lp", directory / f"cpu-{hosts}.csv"
    with lp_path.open("wb") as lp, csv_path.open("wb") as out:
        for start in range(0, rows, CHUNK):
            table = cpu_rows(start, min(CHUNK, rows - start), hosts)
            lp.write(_as_line_protocol(table))
            options = pacsv.WriteOptions(include_header=start == 0)
            pacsv.write_csv(table, out, options)
    return lp_path, csv_path


def _as_line_protocol(table: pa.Table) -> bytes:
    tags = [pc.binary_join_element_wise(f"{t}=", table.column(t), "") for t in TAGS]
    fields = [
        pc.binary_join_element_wise(f"{f}=", table.column(f).cast(pa.string()), "i", "")
        for f in FIELDS
    ]
    series = pc.binary_join_element_wise("cpu", *tags, ",")
    values = pc.binary_join_element_wise(*fields, ",")
    lines = pc.binary_join_element_wise(series, values, table.column("ts").cast(pa.string()), " ")
    return ("\n".join(lines.to_pylist()) + "\n").encode()


def ours(kind: str, level: str, source: Path, work: Path, rows: int) -> dict[str, float]:
    data = work / f"ours_{kind}_{level}"
    tsadmin = str(Path(sys.executable).parent / "tsadmin")
    base = [tsadmin, "--data-dir", str(data), "--quiet"]
    subprocess.run([*base, "db", "create", "b", "--wal-level", level], check=True)
    args = (
        ["ingest", "lp", "b", str(source)]
        if kind == "lp"
        else ["ingest", "csv", "b", str(source), "--table", "cpu", "--tags", ",".join(TAGS)]
    )
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *base, *args], check=True, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    rss_kb = int(done.stderr.strip().splitlines()[-1])
    shutil.rmtree(data)
    return {
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "values_per_s": rows * len(FIELDS) / seconds,
        "peak_rss_mb": rss_kb / 1024,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def influxdb_default_fsync_delay() -> str:
    """``wal-fsync-delay`` as the installed influxd configures it by default."""
    shown = subprocess.run(["influxd", "config"], capture_output=True, text=True).stdout
    for line in shown.splitlines():
        if line.strip().startswith("wal-fsync-delay"):
            return line.split("=", 1)[1].strip().strip('"')
    return "unknown"


@contextmanager
def influxd_running(home: Path, fsync_delay: str | None) -> Iterator[str]:
    """InfluxDB 1.6 on a free loopback port with its data in ``home``, database ``bench``
    created; yields its URL. ``fsync_delay`` None keeps its default ``wal-fsync-delay``."""
    home.mkdir()
    delay = "" if fsync_delay is None else f'  wal-fsync-delay = "{fsync_delay}"\n'
    port, rpc = _free_port(), _free_port()
    config = home / "influxdb.conf"
    config.write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{home}/meta"\n'
        f'[data]\n  dir = "{home}/data"\n  wal-dir = "{home}/wal"\n  query-log-enabled = false\n'
        f"{delay}"
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        f"[monitor]\n  store-enabled = false\n"
    )
    server = subprocess.Popen(
        ["influxd", "-config", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        urllib.request.urlopen(
            urllib.request.Request(f"{url}/query", data=b"q=CREATE DATABASE bench", method="POST"),
            timeout=10,
        )
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def influxdb(source: Path, work: Path, rows: int, fsync_delay: str | None) -> dict[str, Any]:
    """InfluxDB fed ``source`` over HTTP; ``fsync_delay`` None keeps its default."""
    if shutil.which("influxd") is None:
        return {"skipped": "influxd not installed (apt-get install influxdb)"}
    with influxd_running(work / f"influx_{fsync_delay or 'default'}", fsync_delay) as url:
        started = time.perf_counter()
        _post_batches(f"{url}/write?db=bench&precision=ns", source)
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "values_per_s": rows * len(FIELDS) / seconds,
        "wal_fsync_delay": fsync_delay or f"{influxdb_default_fsync_delay()} (its default)",
    }


def _post_batches(url: str, source: Path) -> None:
    """``source`` posted to ``url`` in 5,000-line batches, one request at a time."""
    with source.open("rb") as handle:
        while True:
            batch = b"".join(handle.readline() for _ in range(5000))
            if not batch:
                return
            urllib.request.urlopen(
                urllib.request.Request(url, data=batch, method="POST"), timeout=120
            )


@contextmanager
def victoria_metrics_running(home: Path) -> Iterator[str]:
    """A VictoriaMetrics on a free loopback port with its data in ``home``; its URL."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            "victoria-metrics",
            f"-storageDataPath={home}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=100y",  # the TSBS rows are from 2016
            "-loggerLevel=ERROR",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("victoria-metrics did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def victoria_metrics(source: Path, work: Path, rows: int) -> dict[str, Any]:
    """VictoriaMetrics fed ``source`` over HTTP ``/write`` by one client."""
    if shutil.which("victoria-metrics") is None:
        return {"skipped": "victoria-metrics not installed (apt-get install victoria-metrics)"}
    with victoria_metrics_running(work / "victoria") as url:
        started = time.perf_counter()
        _post_batches(f"{url}/write?precision=ns", source)
        seconds = time.perf_counter() - started
        flush_started = time.perf_counter()
        urllib.request.urlopen(f"{url}/internal/force_flush", timeout=120)
        flush = time.perf_counter() - flush_started
    return {
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "values_per_s": rows * len(FIELDS) / seconds,
        "force_flush_seconds": flush,
    }


def sqlite_peer(work: Path, rows: int, synchronous: str) -> dict[str, float]:
    path = work / f"sqlite_{synchronous}.db"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"PRAGMA synchronous={synchronous}")
    columns = ["ts", *TAGS, *FIELDS]
    con.execute(f"CREATE TABLE cpu ({', '.join(columns)}, PRIMARY KEY ({', '.join(TAGS)}, ts))")
    insert = f"INSERT OR REPLACE INTO cpu VALUES ({', '.join('?' * len(columns))})"
    batches = [
        list(
            zip(
                *[cpu_rows(s, min(5000, rows - s)).column(c).to_pylist() for c in columns],
                strict=True,
            )
        )
        for s in range(0, rows, 5000)
    ]
    started = time.perf_counter()
    for batch in batches:
        con.execute("BEGIN")
        con.executemany(insert, batch)
        con.execute("COMMIT")
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "rows_per_s": rows / seconds}


def duckdb_csv(source: Path, work: Path, rows: int) -> dict[str, float]:
    con = duckdb.connect(str(work / "duck.db"))
    started = time.perf_counter()
    con.execute(f"CREATE TABLE cpu AS SELECT * FROM read_csv('{source}')")
    con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    con.close()
    return {"seconds": seconds, "rows_per_s": rows / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "ingest_peers.json"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        lp, csv = write_inputs(work, args.rows)
        results: dict[str, Any] = {
            "rows": args.rows,
            "lp_bytes": lp.stat().st_size,
            "csv_bytes": csv.stat().st_size,
        }
        results["ours_lp"] = {
            lvl: ours("lp", lvl, lp, work, args.rows) for lvl in ("off", "sync", "flush")
        }
        results["ours_csv"] = {
            lvl: ours("csv", lvl, csv, work, args.rows) for lvl in ("off", "sync", "flush")
        }
        results["influxdb"] = influxdb(lp, work, args.rows, None)
        if shutil.which("influxd") and influxdb_default_fsync_delay() != "0s":
            results["influxdb_fsync0"] = influxdb(lp, work, args.rows, "0s")
        else:  # the default is 0s: one run answers both comparisons
            results["influxdb_fsync0"] = results["influxdb"]
        results["victoria_metrics"] = victoria_metrics(lp, work, args.rows)
        results["sqlite_full"] = sqlite_peer(work, args.rows, "FULL")
        results["sqlite_normal"] = sqlite_peer(work, args.rows, "NORMAL")
        results["duckdb_csv"] = duckdb_csv(csv, work, args.rows)
        # fewer, longer series: line protocol at sync against the same two peers
        few = work / f"hosts_{FEW_HOSTS}"
        few.mkdir()
        lp100, _ = write_inputs(few, args.rows, FEW_HOSTS)
        results["hosts_100"] = {
            "ours_lp_sync": ours("lp", "sync", lp100, few, args.rows),
            "influxdb": influxdb(lp100, few, args.rows, None),
            "victoria_metrics": victoria_metrics(lp100, few, args.rows),
        }
    print(render(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


def render(r: dict[str, Any]) -> str:
    influx = r["influxdb"].get("rows_per_s")
    victoria = r.get("victoria_metrics", {}).get("rows_per_s")
    duck = r["duckdb_csv"]["rows_per_s"]
    table = []
    for kind in ("lp", "csv"):
        for level, v in r[f"ours_{kind}"].items():
            if kind == "lp":
                ratio = ", ".join(
                    f"{v['rows_per_s'] / peer:.2f}x {name}"
                    for peer, name in ((influx, "InfluxDB"), (victoria, "VictoriaMetrics"))
                    if peer
                )
            else:
                ratio = f"{v['rows_per_s'] / duck:.2f}x DuckDB CSV"
            table.append(
                [
                    f"tsadmin ingest {kind}, wal_level={level}",
                    f"{v['rows_per_s']:,.0f} rows/s",
                    f"{v['values_per_s']:,.0f} values/s, peak RSS {v['peak_rss_mb']:.0f} MB",
                    ratio,
                ]
            )
    table.append(
        [
            "InfluxDB 1.6 HTTP /write, 5,000 lines",
            f"{influx:,.0f} rows/s" if influx else "-",
            r["influxdb"].get("skipped", f"wal-fsync-delay {r['influxdb'].get('wal_fsync_delay')}"),
            "peer",
        ]
    )
    vm = r.get("victoria_metrics", {})
    table.append(
        [
            "VictoriaMetrics 1.79 HTTP /write, 5,000 lines",
            f"{victoria:,.0f} rows/s" if victoria else "-",
            vm.get(
                "skipped", f"no fsync; force_flush after: {vm.get('force_flush_seconds', 0):.2f} s"
            ),
            "peer",
        ]
    )
    for key, label in (
        ("sqlite_full", "SQLite WAL, synchronous FULL"),
        ("sqlite_normal", "SQLite WAL, synchronous NORMAL"),
        ("duckdb_csv", "DuckDB CSV load + CHECKPOINT"),
    ):
        table.append(
            [
                label,
                f"{r[key]['rows_per_s']:,.0f} rows/s",
                "5,000-row transactions" if "sqlite" in key else "",
                "peer",
            ]
        )
    few = r.get("hosts_100")
    if few:
        ours_rate = few["ours_lp_sync"]["rows_per_s"]
        ratios = ", ".join(
            f"{ours_rate / few[key]['rows_per_s']:.2f}x {name}"
            for key, name in (("influxdb", "InfluxDB"), ("victoria_metrics", "VictoriaMetrics"))
            if "rows_per_s" in few[key]
        )
        table.append(["100 hosts: tsadmin ingest lp, sync", f"{ours_rate:,.0f} rows/s", "", ratios])
    sizes = f"line protocol {r['lp_bytes'] / 1e6:.0f} MB, CSV {r['csv_bytes'] / 1e6:.0f} MB"
    head = f"{r['rows']:,} TSBS cpu rows ({sizes})"
    return head + "\n" + str(tabulate(table, headers=["measure", "rows/s", "detail", "ratio"]))


if __name__ == "__main__":
    main()
