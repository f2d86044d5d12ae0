"""Every benchmark in one run: the figures, the peers, the ratios and the targets.

Runs ``engine_core.py``, ``backup_restore.py``, ``ingest_peers.py``,
``bounded_cost.py``, ``backup_stores.py``, ``replication.py``, ``retention.py`` and
``serve.py``
(each prints its own table and writes its JSON under ``results/``), then gathers them
into ``results/latest.json`` and ``results/latest.md``: one table of our figure,
the peer's figure and the ratio, and the targets of the issues, each met or not.

Run: ``make bench`` (which also installs InfluxDB 1.6 when it can), or
``.venv/bin/python benchmarks/run_all.py [--rows N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SCRIPTS = (
    "engine_core",
    "backup_restore",
    "ingest_peers",
    "bounded_cost",
    "backup_stores",
    "replication",
    "retention",
    "serve",
    "cli_startup",
    "reads",
)
# backup_stores needs a large database (fixed costs must not dominate): 10x, at least 10M rows
ROWS_OF = {
    "backup_stores": lambda rows: max(10 * rows, 10_000_000),
    "serve": lambda rows: min(rows, 300_000),  # six server runs; a few seconds each
    "reads": lambda rows: max(10 * rows, 10_000_000),  # issue 27 measures reads at 10M rows
}


def run_script(name: str, rows: int) -> dict[str, Any]:
    rows = ROWS_OF.get(name, lambda n: n)(rows)
    out = RESULTS / f"{name}.json"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(HERE / f"{name}.py"), "--rows", str(rows), "--out", str(out)],
        check=True,
        cwd=HERE,
    )
    print(f"({name}: {time.perf_counter() - started:.0f} s)\n", flush=True)
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def replication_rows(rep: dict[str, Any] | None) -> list[list[str]]:
    """The second site (benchmarks/replication.py)."""
    if not rep:
        return []
    ing, out = rep["ingest"], []
    for mode in ("async", "byrl"):
        out.append(
            [
                f"ingest, one writer, with a local replica, {mode}",
                f"{ing[f'local_{mode}_rows_per_s']:,} rows/s",
                f"{ing['sync_no_replica_rows_per_s']:,} rows/s (sync, no replica)",
                f"{ing[f'local_{mode}_ratio']:.2f}x",
            ]
        )
    peers = rep.get("litestream_lag", {})
    for store, lag in rep.get("lag", {}).items():
        peer = peers.get(store, {})
        out.append(
            [
                f"replication lag to a {store} store (ack -> applied on a following standby)",
                f"p50 {lag['p50_s']} s, p99 {lag['p99_s']} s",
                f"Litestream 0.5: p50 {peer['p50_s']} s, p99 {peer['p99_s']} s"
                if "p50_s" in peer
                else "",
                f"{peer['p50_s'] / lag['p50_s']:.1f}x faster (p50)" if "p50_s" in peer else "",
            ]
        )
    for store, run in rep.get("byrl_serve_16", {}).items():
        out.append(
            [
                f"serve, 16 HTTP clients, byrl to a {store} store",
                f"{run['byrl_rows_per_s']:,} rows/s",
                f"{run['sync_rows_per_s']:,} rows/s (sync)",
                f"{run['ratio']:.2f}x",
            ]
        )
    fail = sorted(f["failover_s"] for f in rep["failover"])
    out.append(
        [
            "failover: primary lost -> promote -> first write accepted (3 trials)",
            f"median {fail[len(fail) // 2]} s (max {fail[-1]} s)",
            "",
            "",
        ]
    )
    apply = rep["apply"]
    out.append(
        [
            f"standby apply, log shipped as commits happened ({apply['segments']} segments; "
            f"median of {len(apply.get('trials', [1]))} processes)",
            f"{apply['apply_rows_per_s']:,} rows/s",
            f"{apply['replay_rows_per_s']:,} rows/s (recovery replay)",
            f"{apply['apply_vs_replay']:.2f}x",
        ]
    )
    pitr = rep["pitr"]
    out.append(
        [
            f"point-in-time restore, {pitr['history_rows']:,} rows of history, "
            f"{pitr['snapshots']} snapshots (5 targets)",
            f"engine max {pitr['engine_max_s']} s, median {pitr['engine_median_s']} s",
            f"the whole command, max {pitr['command_max_s']} s",
            "",
        ]
    )
    return out


def replication_targets(r: dict[str, Any]) -> list[tuple[str, float | None, float]]:
    """Issue 23's targets; a "<=" target is stated as goal / measured >= 1."""
    rep, st = r.get("replication"), r.get("backup_stores", {})
    if not rep:
        return []
    lag, peers = rep.get("lag", {}), rep.get("litestream_lag", {})
    checks: list[tuple[str, float | None, float]] = []
    for store, p50, p99 in (("local", 0.25, 0.75), ("moto", 0.5, 1.0)):
        if store in lag:
            checks.append((f"lag p50 <= {p50} s ({store})", p50 / lag[store]["p50_s"], 1.0))
            checks.append((f"lag p99 <= {p99} s ({store})", p99 / lag[store]["p99_s"], 1.0))
        if store in lag and "p50_s" in peers.get(store, {}):
            ratio = peers[store]["p50_s"] / lag[store]["p50_s"]
            checks.append((f"lag p50 ahead of Litestream ({store})", ratio, 1.0))
    fail = sorted(f["failover_s"] for f in rep["failover"])
    checks.append(("failover <= 1 s (median of 3)", 1.0 / fail[len(fail) // 2], 1.0))
    checks.append(("standby apply >= 0.7x recovery replay", rep["apply"]["apply_vs_replay"], 0.7))
    byrl = rep.get("byrl_serve_16", {})
    for store, goal in (("local", 0.7), ("moto", 0.5)):
        if store in byrl:
            checks.append(
                (f"byrl, 16 clients >= {goal}x sync ({store})", byrl[store]["ratio"], goal)
            )
    checks.append(
        (
            "point-in-time restore <= 0.5 s, 1M rows of history",
            0.5 / rep["pitr"]["engine_max_s"],
            1.0,
        )
    )
    if st:
        disk = st["disk_write_mb_per_s"]
        checks.append(
            ("restore of 10M rows >= 0.5x the disk's write rate",
             st["local"]["restore"]["mb_per_s"] / disk, 0.5)
        )  # fmt: skip
        vm = st.get("victoria_metrics", {})
        if "restore" in vm:
            checks.append(
                ("restore of 10M rows ahead of vmrestore (same rows)",
                 vm["restore"]["seconds"] / st["local"]["restore"]["seconds"], 1.0)
            )  # fmt: skip
    return checks


def rows_of_table(r: dict[str, Any]) -> list[list[str]]:
    """measure | ours | peer | ratio, every figure from this run."""
    core, bk, ing = r["engine_core"], r["backup_restore"], r["ingest_peers"]
    disk, gc = core["disk"], core["group_commit"]
    influx = ing["influxdb"].get("rows_per_s")
    duck = ing["duckdb_csv"]["rows_per_s"]
    out = [
        [
            "disk: sequential write + fsync",
            "",
            f"{core['disk_sequential']['mb_per_s']:,.0f} MB/s",
            "physical limit",
        ],
        [
            "disk: 128 B write + fsync",
            "",
            f"{disk['fsyncs_per_s']:,.0f} fsyncs/s (median {disk['median_ms']:.2f} ms, "
            f"p99 {disk['p99_ms']:.2f} ms)",
            "physical limit",
        ],
    ]
    for kind, peer, peer_name in (("lp", influx, "InfluxDB 1.6"), ("csv", duck, "DuckDB")):
        for level, v in ing[f"ours_{kind}"].items():
            out.append(
                [
                    f"CLI ingest {kind}, wal_level={level}",
                    f"{v['rows_per_s']:,.0f} rows/s, {v['values_per_s']:,.0f} values/s, "
                    f"peak RSS {v['peak_rss_mb']:.0f} MB",
                    f"{peer:,.0f} rows/s ({peer_name})" if peer else "skipped",
                    f"{v['rows_per_s'] / peer:.2f}x" if peer else "",
                ]
            )
    victoria = ing.get("victoria_metrics", {})
    for level, v in ing["ours_lp"].items():
        vm_rate = victoria.get("rows_per_s")
        out.append(
            [
                f"CLI ingest lp, wal_level={level}, vs VictoriaMetrics (no fsync)",
                f"{v['rows_per_s']:,.0f} rows/s",
                f"{vm_rate:,.0f} rows/s (VictoriaMetrics 1.79)"
                if vm_rate
                else victoria.get("skipped", "skipped"),
                f"{v['rows_per_s'] / vm_rate:.2f}x" if vm_rate else "",
            ]
        )
    for key, label in (
        ("sqlite_full", "SQLite WAL synchronous=FULL"),
        ("sqlite_normal", "SQLite WAL synchronous=NORMAL"),
    ):
        sync_rate = ing["ours_csv"]["sync"]["rows_per_s"]
        out.append(
            [
                f"CLI ingest csv, sync vs {label}, 5,000-row txns",
                f"{sync_rate:,.0f} rows/s",
                f"{ing[key]['rows_per_s']:,.0f} rows/s",
                f"{sync_rate / ing[key]['rows_per_s']:.2f}x",
            ]
        )
    for level, v in core["ingest"].items():
        out.append(
            [
                f"engine ingest wal_level={level}, 5,000-row batches",
                f"{v['rows_per_s']:,.0f} rows/s",
                f"{core['ingest']['off']['rows_per_s']:,.0f} rows/s (wal_level=off)",
                f"{v['rows_per_s'] / core['ingest']['off']['rows_per_s']:.2f}x",
            ]
        )
    for writers, v in gc.items():
        out.append(
            [
                f"group commit, sync, {writers} writer(s), 100-row batches",
                f"{v['commits_per_s']:,.0f} commits/s ({v['commits_per_fsync']:.1f} per fsync)",
                f"{disk['fsyncs_per_s']:,.0f} fsyncs/s (disk)",
                f"{v['commits_per_s'] / gc['1']['commits_per_s']:.2f}x 1 writer, "
                f"{v['commits_per_s'] / disk['fsyncs_per_s']:.2f}x disk",
            ]
        )
    rec = core["recovery"]
    out += [
        [
            f"recovery: reopen after kill, {rec['rows']:,} rows in the WAL",
            f"{rec['rows_per_s']:,.0f} rows/s ({rec['seconds']:.2f} s)",
            f"{core['ingest']['sync']['rows_per_s']:,.0f} rows/s (sync ingest)",
            f"{rec['rows_per_s'] / core['ingest']['sync']['rows_per_s']:.1f}x",
        ],
        [
            f"checkpoint of {rec['rows']:,} rows",
            f"{rec['checkpoint_s']:.2f} s ({rec['rows'] / rec['checkpoint_s']:,.0f} rows/s)",
            "",
            "",
        ],
    ]
    for what in ("backup", "restore"):
        v = bk[what]
        out.append(
            [
                f"{what}, {bk['rows']:,} rows ({bk['database_bytes'] / 1e6:.1f} MB)",
                f"{v['seconds']:.3f} s, {v['mb_per_s']:,.0f} MB/s",
                f"cp -r {bk['cp_r']['seconds']:.3f} s; cp -r && sync "
                f"{bk['cp_r_sync']['seconds']:.3f} s; DuckDB COPY "
                f"{bk['duckdb_copy_zstd']['seconds']:.3f} s",
                f"{bk['cp_r']['seconds'] / v['seconds']:.2f}x cp -r, "
                f"{bk['cp_r_sync']['seconds'] / v['seconds']:.2f}x cp+sync, "
                f"{bk['duckdb_copy_zstd']['seconds'] / v['seconds']:.1f}x DuckDB",
            ]
        )
    st = r["backup_stores"]
    disk_mb = st["disk_write_mb_per_s"]
    out.append(
        [
            f"cp -r && sync, {st['rows']:,} rows ({st['database_bytes'] / 1e6:,.0f} MB)",
            f"{st['cp_r_sync']['seconds']:.2f} s",
            f"{disk_mb:,.0f} MB/s (disk, sequential write + fsync)",
            f"{st['cp_r_sync']['mb_per_s'] / disk_mb:.2f}x disk",
        ]
    )
    for store in ("local", "s3"):
        for what in ("backup", "restore"):
            v = st[store][what]
            out.append(
                [
                    f"{what}, {st['rows']:,} rows, {store} store"
                    + (" (moto on loopback)" if store == "s3" else ""),
                    f"{v['seconds']:.2f} s, {v['mb_per_s']:,.0f} MB/s",
                    f"cp -r && sync {st['cp_r_sync']['seconds']:.2f} s; disk {disk_mb:,.0f} MB/s",
                    f"{st['cp_r_sync']['seconds'] / v['seconds']:.2f}x cp+sync, "
                    f"{v['mb_per_s'] / disk_mb:.2f}x disk",
                ]
            )
    vm = st.get("victoria_metrics", {})
    for what, tool in (("backup", "vmbackup"), ("restore", "vmrestore")):
        if what in vm:
            v, ours = vm[what], st["local"][what]
            out.append(
                [
                    f"{what}, {st['rows']:,} rows, local store, against VictoriaMetrics",
                    f"{ours['seconds']:.2f} s",
                    f"{tool} {v['seconds']:.2f} s ({vm['archive_bytes'] / 1e6:,.0f} MB)",
                    f"{v['seconds'] / ours['seconds']:.2f}x",
                ]
            )
    bc = r["bounded_cost"]
    for keys, v in bc["wide_lines"].items():
        out.append(
            [
                f"one line with {int(keys):,} tag keys: ingest, select --limit 1",
                f"{v['ingest_s']:.3f} s, {v['select_s']:.3f} s",
                f"{v['ingest_us_per_key']:.0f} / {v['select_us_per_key']:.0f} us per key",
                "",
            ]
        )
    sel = bc["select_limit"]
    out.append(
        [
            f"select --limit 1 of {sel['rows']:,} rows",
            f"{sel['limit1_s']:.3f} s",
            f"full read {sel['full_s']:.3f} s",
            f"{sel['full_s'] / sel['limit1_s']:.0f}x faster",
        ]
    )
    out += replication_rows(r.get("replication"))
    out += retention_rows(r.get("retention"))
    out += serve_rows(r.get("serve"))
    start = r.get("cli_startup")
    if start:
        ms = {k: f"{v * 1000:.0f} ms" for k, v in start.items() if isinstance(v, float)}
        floor = f"python {ms['python']}, import typer {ms['import_typer']}"
        for key, what in (("version", "tsadmin --version"), ("db_list", "tsadmin db list (3 dbs)")):
            out.append([f"CLI start-up: {what}", ms[key], floor, ""])
    reads = r.get("reads")
    for name, q in (reads or {}).get("queries", {}).items():
        out.append(
            [
                f"select {name} ({reads['rows']:,} rows)",  # type: ignore[index]
                f"{q['tsadmin']:.3f} s",
                f"DuckDB on the backup's Parquet {q['duckdb']:.3f} s",
                f"{q['ratio']:.2f}x",
            ]
        )
    return out


def serve_rows(srv: dict[str, Any] | None) -> list[list[str]]:
    """The write endpoint (benchmarks/serve.py): HTTP clients, sync against flush and
    against InfluxDB 1.6."""
    if not srv:
        return []
    out = []
    for clients, run in srv["runs"].items():
        sync, flush, peer = run["sync"], run["flush"], run["influxdb"]
        out.append(
            [
                f"serve, {clients} HTTP clients x {srv['batch_lines']}-line batches, sync",
                f"{sync['rows_per_s']:,} rows/s ({sync['requests'] / sync['fsyncs']:.1f} "
                "requests per fsync)",
                f"{flush['rows_per_s']:,} rows/s (flush)",
                f"{run['sync_vs_flush']:.2f}x",
            ]
        )
        out.append(
            [
                f"serve, {clients} HTTP clients, sync vs InfluxDB 1.6 (its default)",
                f"{sync['rows_per_s']:,} rows/s",
                peer.get("skipped") or f"{peer['rows_per_s']:,} rows/s (InfluxDB 1.6)",
                f"{run['sync_vs_influxdb']:.2f}x" if "sync_vs_influxdb" in run else "",
            ]
        )
        victoria = run.get("victoria_metrics")
        if victoria is not None:
            out.append(
                [
                    f"serve, {clients} HTTP clients, sync vs VictoriaMetrics 1.79 (no fsync)",
                    f"{sync['rows_per_s']:,} rows/s",
                    victoria.get("skipped")
                    or f"{victoria['rows_per_s']:,} rows/s (VictoriaMetrics 1.79)",
                    f"{run['sync_vs_victoria_metrics']:.2f}x"
                    if "sync_vs_victoria_metrics" in run
                    else "",
                ]
            )
    for clients, run in srv.get("host_batches", {}).items():
        out.append(
            [
                f"serve, {clients} HTTP clients x {srv['host_batch_lines']:,}-line batches, "
                "sync, default memory ceiling",
                f"{run['rows_per_s']:,} rows/s",
                f"{run['over_ceiling_503']} answers 503 of {run['requests']}",
                "",
            ]
        )
    return out


def retention_rows(ret: dict[str, Any] | None) -> list[list[str]]:
    """Deletes and expiry (benchmarks/retention.py): against rewriting the data."""
    if not ret:
        return []
    out = []
    for key, what in (("delete_1pct_by_host", "one host"), ("delete_1pct_by_time", "a time range")):
        d = ret[key]
        out.append(
            [
                f"delete 1% of {ret['rows']:,} rows ({what}, {d['segments_rewritten']} "
                "segment(s) rewritten)",
                f"{d['seconds']} s",
                f"{ret['rewrite_all_s']} s (rewrite the whole table)",
                f"{d['vs_rewrite_all']:.2f}x",
            ]
        )
    e = ret["expire_one_partition"]
    out.append(
        [
            f"expire one partition ({e['rows']:,} rows, files dropped unread)",
            f"{e['seconds']} s",
            f"{ret['rewrite_one_partition_s']} s (rewrite that partition)",
            f"{e['vs_rewrite_one_partition']:.3f}x",
        ]
    )
    return out


def _few_hosts_targets(ing: dict[str, Any]) -> list[tuple[str, float | None, float]]:
    """Issue 28's line-protocol targets again on 100 hosts (fewer, longer series)."""
    few = ing.get("hosts_100")
    if not few:
        return []
    ours = few["ours_lp_sync"]["rows_per_s"]
    return [
        (
            f"lp ingest at sync, 100 hosts >= {goal}x {name} (issue 28)",
            ours / few[key]["rows_per_s"] if "rows_per_s" in few[key] else None,
            goal,
        )
        for key, name, goal in (
            ("influxdb", "InfluxDB 1.6", 3.0),
            ("victoria_metrics", "VictoriaMetrics", 1.5),
        )
    ]


def targets(r: dict[str, Any]) -> list[list[str]]:
    """target | figure | met?"""
    core, bk, ing = r["engine_core"], r["backup_restore"], r["ingest_peers"]
    gc, ingest = core["group_commit"], core["ingest"]
    influx = ing["influxdb"].get("rows_per_s")
    influx0 = ing.get("influxdb_fsync0", ing["influxdb"]).get("rows_per_s")
    checks: list[tuple[str, float | None, float]] = [
        (
            "group commit: 16 writers >= 8x 1 writer",
            gc["16"]["commits_per_s"] / gc["1"]["commits_per_s"],
            8.0,
        ),
        (
            "sync ingest >= 0.7x off (engine)",
            ingest["sync"]["rows_per_s"] / ingest["off"]["rows_per_s"],
            0.7,
        ),
        (
            "recovery replay >= 5x sync ingest",
            core["recovery"]["rows_per_s"] / ingest["sync"]["rows_per_s"],
            5.0,
        ),
        (
            "lp ingest at flush >= InfluxDB (default wal-fsync-delay)",
            ing["ours_lp"]["flush"]["rows_per_s"] / influx if influx else None,
            1.0,
        ),
        (
            "lp ingest at sync >= InfluxDB (wal-fsync-delay=0s)",
            ing["ours_lp"]["sync"]["rows_per_s"] / influx0 if influx0 else None,
            1.0,
        ),
        (
            "lp ingest at sync >= 3x InfluxDB 1.6 (issue 28)",
            ing["ours_lp"]["sync"]["rows_per_s"] / influx0 if influx0 else None,
            3.0,
        ),
        (
            "lp ingest at sync >= 1.5x VictoriaMetrics (issue 28)",
            ing["ours_lp"]["sync"]["rows_per_s"] / ing["victoria_metrics"]["rows_per_s"]
            if "rows_per_s" in ing.get("victoria_metrics", {})
            else None,
            1.5,
        ),
        *_few_hosts_targets(ing),
        (
            "csv ingest at sync >= 1x DuckDB's CSV load into a table (issue 28)",
            ing["ours_csv"]["sync"]["rows_per_s"] / ing["duckdb_csv"]["rows_per_s"],
            1.0,
        ),
        (
            "engine sync >= 0.9x off, 5,000-row batches (issue 28)",
            ingest["sync"]["rows_per_s"] / ingest["off"]["rows_per_s"],
            0.9,
        ),
        (
            "csv ingest >= 0.5x DuckDB's CSV load",
            min(v["rows_per_s"] for v in ing["ours_csv"].values())
            / ing["duckdb_csv"]["rows_per_s"],
            0.5,
        ),
        ("backup >= 0.8x cp -r", bk["cp_r"]["seconds"] / bk["backup"]["seconds"], 0.8),
        ("restore >= 0.8x cp -r", bk["cp_r"]["seconds"] / bk["restore"]["seconds"], 0.8),
        (
            "backup faster than DuckDB's COPY",
            bk["duckdb_copy_zstd"]["seconds"] / bk["backup"]["seconds"],
            1.0,
        ),
        (
            "restore faster than DuckDB's COPY",
            bk["duckdb_copy_zstd"]["seconds"] / bk["restore"]["seconds"],
            1.0,
        ),
        (
            "wide lines linear: per-key ingest cost at 1,000 keys / at 10,000 keys >= 0.5",
            1 / r["bounded_cost"]["ingest_per_key_ratio"],
            0.5,
        ),
    ]
    checks += replication_targets(r)
    for name, q in r.get("reads", {}).get("queries", {}).items():
        target = f"select {name}: DuckDB's time / ours >= 0.67 (ours <= 1.5x DuckDB's)"
        checks.append((target, q["duckdb"] / q["tsadmin"], 1 / 1.5))
    start = r.get("cli_startup")
    if start:
        checks.append(("CLI start-up: tsadmin --version < 0.25 s", 0.25 / start["version"], 1.0))
        checks.append(("CLI start-up: tsadmin db list < 0.25 s", 0.25 / start["db_list"], 1.0))
    for clients, run in r.get("serve", {}).get("runs", {}).items():
        if clients == "1":  # group commit is for many writers; one is compared to peers
            checks.append(
                (
                    "serve, 1 client: sync >= InfluxDB 1.6 (its default)",
                    run.get("sync_vs_influxdb"),
                    1.0,
                )
            )
            continue
        checks.append((f"serve, {clients} clients: sync >= 0.7x flush", run["sync_vs_flush"], 0.7))
        checks.append(
            (
                f"serve, {clients} clients: sync >= InfluxDB 1.6 (its default)",
                run.get("sync_vs_influxdb"),
                1.0,
            )
        )
        checks.append(
            (f"serve, {clients} clients: sync >= 0.8x flush (issue 28)", run["sync_vs_flush"], 0.8)
        )
        checks.append(
            (
                f"serve, {clients} clients: sync >= 1.5x VictoriaMetrics (issue 28)",
                run.get("sync_vs_victoria_metrics"),
                1.5,
            )
        )
    rows = [
        [
            name,
            "skipped (no peer)" if ratio is None else f"{ratio:.2f}x",
            "-" if ratio is None else ("met" if ratio >= goal else "NOT met"),
        ]
        for name, ratio, goal in checks
    ]
    for clients, run in r.get("serve", {}).get("host_batches", {}).items():
        refused = run["over_ceiling_503"]
        rows.append(
            [
                f"serve, {clients} clients x 1,000-host batches: no 503 with the default ceiling",
                f"{refused} answers 503",
                "met" if refused == 0 else "NOT met",
            ]
        )
    return rows


def markdown(r: dict[str, Any]) -> str:
    from tabulate import tabulate

    head = (
        f"# tsadmin benchmarks\n\n{r['rows']:,} TSBS cpu-only rows; run {r['finished']} on "
        f"{r['machine']} in {r['seconds']:.0f} s (`make bench`). Every figure comes from this "
        "one run; figures on a shared machine vary 20-30 % run to run, so compare ratios.\n\n"
    )
    table = tabulate(
        rows_of_table(r), headers=["measure", "tsadmin", "peer / limit", "ratio"], tablefmt="github"
    )
    goals = tabulate(targets(r), headers=["target", "ratio", ""], tablefmt="github")
    return f"{head}{table}\n\n## Targets\n\n{goals}\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "rows": args.rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
    }
    for name in SCRIPTS:
        results[name] = run_script(name, args.rows)
    results["seconds"] = time.perf_counter() - started
    results["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    # JSON object keys are strings: the group-commit writer counts come back as "1", "4", "16"
    results = json.loads(json.dumps(results, default=str))
    results["targets"] = [
        {"target": t, "ratio": ratio, "verdict": verdict} for t, ratio, verdict in targets(results)
    ]
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    (RESULTS / "latest.md").write_text(text)
    print(text)
    print(f"written to {RESULTS / 'latest.json'} and {RESULTS / 'latest.md'}")


if __name__ == "__main__":
    main()
