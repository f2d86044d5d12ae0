"""The end-to-end demonstration behind ``tsadmin demo`` (and ``make demo``).

Creates a database, ingests line protocol, checkpoints, starts a real writer
process and kills it with SIGKILL mid-stream, reopens the database (crash
recovery), checks that every acknowledged batch survived exactly once, then
serves it over HTTP for a moment (a write, a partial write, a clean stop).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import ops
from engine.db.database import Database
from engine.db.datadir import create_database, database_dir
from engine.harness import workload
from engine.ingest.pipeline import IngestOptions, ingest_lp
from engine.io.fileio import IO
from engine.settings import Settings, WalLevel

DEMO_DB = "tsadmin_demo"
HOSTS = 10
POINTS_PER_HOST = 2000


@dataclass
class DemoReport:
    data_dir: str
    database: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = True

    def add(self, step: str, result: str, **figures: Any) -> None:
        self.steps.append({"step": step, "result": result, "figures": figures})

    def to_json(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_dir,
            "database": self.database,
            "ok": self.ok,
            "steps": self.steps,
        }


def sample_line_protocol(hosts: int = HOSTS, points: int = POINTS_PER_HOST) -> bytes:
    """CPU metrics for ``hosts`` hosts, one point every 10 s, in line protocol."""
    start = 1_700_000_000 * 1_000_000_000
    lines = []
    for i in range(points):
        ts = start + i * 10_000_000_000
        for h in range(hosts):
            region = "eu-west" if h % 2 else "us-east"
            lines.append(
                f"cpu,host=host_{h},region={region} usage_user={(i * 7 + h) % 100}.5,"
                f"usage_system={(i + h * 3) % 50}i,"
                f"healthy={'true' if (i + h) % 9 else 'false'} {ts}"
            )
    return ("\n".join(lines) + "\n").encode()


def run_demo(data_dir: Path, *, kill_after_acks: int = 40) -> DemoReport:
    report = DemoReport(data_dir=str(data_dir), database=DEMO_DB)
    target = database_dir(data_dir, DEMO_DB)
    IO.remove_tree(target)
    create_database(data_dir, DEMO_DB, Settings.build(precision="ns", wal_level="sync"))
    report.add("create", f"database {DEMO_DB} (wal_level sync, precision ns)")

    data = sample_line_protocol()
    with Database.open(target, DEMO_DB) as db:
        ingest = ingest_lp(db, io.BytesIO(data), "sample.lp", IngestOptions(batch_rows=5000))
        report.add(
            "ingest",
            f"{ingest.rows} rows of line protocol",
            rows_per_second=round(ingest.rows_per_second),
        )
        ckpt = db.checkpoint("demo")
        report.add(
            "checkpoint",
            f"{ckpt.rows} rows into {ckpt.segments_written} segment(s)",
            bytes=ckpt.bytes_written,
            seconds=round(ckpt.seconds, 3),
        )

    acks, killed_at, pid = _kill_a_writer(target, kill_after_acks)
    report.add(
        "crash",
        f"writer PID {pid} killed with SIGKILL after {len(acks.acked)} acknowledged batches",
        acked_batches=len(acks.acked),
        kill_seconds=round(killed_at, 3),
    )

    with Database.open(target, DEMO_DB, background=False) as db:
        rec = db.recovery
    report.add(
        "recover",
        f"replayed {rec.records_replayed} records: {rec.transactions_applied} transactions "
        f"applied, {rec.transactions_rolled_back} rolled back, "
        f"{rec.bytes_truncated} bytes of torn tail cut",
        rows=rec.rows_applied,
        seconds=round(rec.seconds, 3),
    )

    verdict = workload.verify(target, DEMO_DB, acks, rows=50, level=WalLevel.SYNC)
    report.ok = verdict.ok
    report.add(
        "verify",
        "every acknowledged batch present exactly once"
        if verdict.ok
        else "; ".join(verdict.problems),
        acked=verdict.acked,
        recovered=verdict.recovered,
    )

    served = _write_over_http(data_dir)
    report.ok = report.ok and served["ok"]
    report.add(
        "serve",
        f"{served['points']} points over HTTP: {served['statuses'][0]}; a batch with a bad "
        f"line: {served['statuses'][1]}, its good line kept; stopped, drained, checkpointed",
        rows_in_table=served["rows"],
    )

    digest = ops.database_checksum(data_dir, DEMO_DB)
    report.add("checksum", f"sha256 {digest.sha256[:16]}… over {digest.rows} rows")
    return report


def _write_over_http(data_dir: Path, points: int = 100) -> dict[str, Any]:
    """Serve the demo database on a free loopback port (in this process), post a batch
    and a batch with one bad line as a client would, then stop it as SIGTERM does."""
    from engine.server.run import serve
    from engine.server.service import ServeConfig

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stop = threading.Event()
    config = ServeConfig(bind=f"127.0.0.1:{port}", databases=(DEMO_DB,), log_interval_s=3600)
    server = threading.Thread(target=serve, args=(data_dir, config, stop, lambda _: None))
    server.start()
    url = f"http://127.0.0.1:{port}/write?db={DEMO_DB}&precision=s"
    try:
        _wait_for(f"http://127.0.0.1:{port}/ping", server)
        start = 1_800_000_000
        good = "".join(f"http,host=h{i % 4} v={i}i {start + i}\n" for i in range(points))
        bad = f"http,host=h0 v=1i {start - 1}\nhttp,host=h0 v= {start - 2}\n"
        statuses = [_post(url, good.encode()), _post(url, bad.encode())]
    finally:
        stop.set()
        server.join()
    rows = ops.select(data_dir, DEMO_DB, "http").num_rows
    ok = statuses == [204, 400] and rows == points + 1
    return {"points": points, "statuses": statuses, "rows": rows, "ok": ok}


def _wait_for(url: str, server: threading.Thread) -> None:
    for _ in range(200):
        if not server.is_alive():
            raise RuntimeError("the demo's server stopped at start")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.05)


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _kill_a_writer(target: Path, kill_after_acks: int) -> tuple[workload.Acks, float, int]:
    """Start a writer child, kill it once it has acknowledged ``kill_after_acks`` batches;
    its acknowledgements, the seconds it ran and its PID."""
    cmd = [
        sys.executable,
        "-m",
        "engine.harness.workload",
        str(target),
        DEMO_DB,
        "--batches",
        "100000",
        "--rows",
        "50",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    lines = []
    started = time.perf_counter()
    for line in child.stdout:
        lines.append(line)
        if (
            line.startswith("ACK")
            and sum(1 for x in lines if x.startswith("ACK")) >= kill_after_acks
        ):
            break
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate()
    lines.append(rest)
    return workload.Acks.parse("".join(lines)), time.perf_counter() - started, child.pid
