"""tsadmin serve, the write endpoint: real server processes on loopback ports, written
to by the real InfluxDB client libraries (1.x ``influxdb``, 2.x ``influxdb-client``) and
raw HTTP, read back with ``tsadmin select`` in another process, stopped with SIGTERM
and killed with SIGKILL."""

from __future__ import annotations

import base64
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.server.run import DRAIN_TIMEOUT_S
from tests.conftest import CLEAN_ENV, new_db, run_cli, start_writer, wait_ready
from tests.servers import free_port, wait_for_http


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    data_dir: Path
    stderr: str = ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.proc.send_signal(sig)
        _, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode


@contextmanager
def serving(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    cmd = [sys.executable, "-m", "tsadmin", "--data-dir", str(data_dir), "serve"]
    proc = subprocess.Popen(
        [*cmd, "--bind", f"127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**CLEAN_ENV, **(env or {})},
    )
    server = Server(f"http://127.0.0.1:{port}", proc, data_dir)
    try:
        if not wait_for_http(f"{server.url}/ping"):
            proc.kill()
            raise AssertionError(f"serve did not start: {proc.communicate()[1]}")
        yield server
    finally:
        if proc.poll() is None:
            server.stop(signal.SIGKILL)


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), dict(exc.headers))


def get(url: str) -> Answer:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read(), dict(exc.headers))


def rows(data_dir: Path, db: str, table: str) -> list[dict[str, object]]:
    result = run_cli(data_dir, "--format", "json", "select", db, table, "--epoch")
    assert result.code == 0, result.err
    return result.json()  # type: ignore[no-any-return]


# -- the client libraries -------------------------------------------------------------------


def test_influxdb_1x_client_library_writes_what_select_reads(data_dir: Path) -> None:
    from influxdb import InfluxDBClient

    new_db(data_dir, "metrics", wal_level="sync")
    with serving(data_dir) as server:
        port = int(server.url.rsplit(":", 1)[1])
        client = InfluxDBClient(host="127.0.0.1", port=port, database="metrics")
        points = [
            {
                "measurement": "cpu",
                "tags": {"host": "web-1", "region": "eu"},
                "time": 1_700_000_000 + i,
                "fields": {"usage": 0.5 + i, "cores": 8, "ok": True, "note": f"n{i}"},
            }
            for i in range(50)
        ]
        assert client.write_points(points, time_precision="s")
        client.create_database("telegraf")  # what Telegraf sends first: made and served
        point = {"measurement": "m", "fields": {"v": 1}, "time": 5}
        assert client.write_points([point], time_precision="n", database="telegraf")
        assert {"name": "telegraf"} in client.get_list_database()
        escape = post(f"{server.url}/query", b"q=CREATE+DATABASE+%22..%2Fevil%22")
        assert escape.status == 400 and not (data_dir.parent / "evil").exists()
        assert server.stop() == 0
    got = rows(data_dir, "metrics", "cpu")
    assert len(got) == 50
    first = got[0]
    assert first["ts"] == 1_700_000_000 * 10**9
    assert (first["host"], first["region"], first["usage"], first["cores"]) == (
        "web-1",
        "eu",
        0.5,
        8,
    )
    assert first["ok"] is True and first["note"] == "n0"
    assert rows(data_dir, "telegraf", "m") == [{"ts": 5, "v": 1}]


def test_influxdb_2x_client_library_with_a_token_and_gzip(data_dir: Path) -> None:
    from influxdb_client import InfluxDBClient, Point, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS
    from influxdb_client.rest import ApiException

    new_db(data_dir, "metrics", wal_level="sync")
    with serving(data_dir, env={"TSADMIN_TOKEN": "s3cret"}) as server:
        for gzipped in (False, True):
            with InfluxDBClient(
                url=server.url, token="s3cret", org="any", enable_gzip=gzipped
            ) as client:
                write = client.write_api(write_options=SYNCHRONOUS)
                base = 1_000 if gzipped else 0
                write.write(
                    bucket="metrics/autogen",
                    record=[
                        Point("mem").tag("host", "db-1").field("used", base + i).time(i, "ms")
                        for i in range(100)
                    ],
                    write_precision=WritePrecision.MS,
                )
        with InfluxDBClient(url=server.url, token="wrong", org="any") as client:
            with pytest.raises(ApiException) as refused:
                client.write_api(write_options=SYNCHRONOUS).write(
                    bucket="metrics", record="mem used=1i 1"
                )
            assert refused.value.status == 401
        with InfluxDBClient(url=server.url, token="s3cret", org="any") as client:
            assert client.ping()
            with pytest.raises(ApiException) as missing:
                client.write_api(write_options=SYNCHRONOUS).write(
                    bucket="nosuch", record="mem used=1i 1"
                )
            assert missing.value.status == 404
        assert server.stop() == 0
    got = rows(data_dir, "metrics", "mem")
    assert [(r["ts"], r["used"]) for r in got] == [(i * 10**6, 1_000 + i) for i in range(100)]


def test_telegraf_shaped_requests(data_dir: Path) -> None:
    """The requests Telegraf's outputs.influxdb sends (plugins/outputs/influxdb/http.go):
    CREATE DATABASE as a form POST with Basic auth, then gzip line protocol to /write
    with db, rp and consistency; it drops a batch on 4xx and retries on 5xx."""
    with serving(data_dir, "--token", "pw") as server:
        auth = {"Authorization": "Basic " + base64.b64encode(b"telegraf:pw").decode()}
        form = {**auth, "Content-Type": "application/x-www-form-urlencoded"}
        created = post(f"{server.url}/query", b"q=CREATE+DATABASE+%22telegraf%22", form)
        assert created.status == 200 and created.json() == {"results": [{"statement_id": 0}]}
        lines = b"".join(
            b"cpu,cpu=cpu%d,host=web usage_idle=9%d.5,usage_user=1.5 %d\n" % (i, i, 10**18 + i)
            for i in range(8)
        )
        headers = {
            **auth,
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Encoding": "gzip",
            "User-Agent": "Telegraf/1.30.0 Go/1.22.0",
        }
        url = f"{server.url}/write?consistency=any&db=telegraf&rp=autogen"
        assert post(url, gzip.compress(lines), headers).status == 204
        assert server.stop() == 0
    got = rows(data_dir, "telegraf", "cpu")
    assert [(r["cpu"], r["usage_idle"]) for r in got] == [(f"cpu{i}", 90.5 + i) for i in range(8)]


# -- the API's answers ----------------------------------------------------------------------


def test_partial_write_answers_400_naming_the_lines_and_keeps_the_good_ones(
    data_dir: Path,
) -> None:
    new_db(data_dir, "m", wal_level="sync")
    body = b"cpu v=1 1\ncpu v= 2\ncpu v=3 3\ncpu,a v=4 4\ncpu v=5 5\n"
    with serving(data_dir) as server:
        v1 = post(f"{server.url}/write?db=m", body)
        v2 = post(f"{server.url}/api/v2/write?bucket=m&org=o", b'cpu v=6 6\ncpu v="x" 7')
        assert server.stop() == 0
    assert v1.status == 400
    error = str(v1.json()["error"])
    assert error.startswith("partial write: unable to parse 'cpu v= 2'")
    assert "(line 2, column 7)" in error and "'cpu,a v=4 4'" in error and "(line 4" in error
    assert error.endswith("dropped=2")
    assert v1.headers["X-Influxdb-Error"].startswith("partial write")
    assert v2.status == 400
    assert v2.json()["code"] == "invalid"
    assert "(line 2)" in str(v2.json()["message"])  # a string into a float field
    assert [(r["ts"], r["v"]) for r in rows(data_dir, "m", "cpu")] == [
        (1, 1.0),
        (3, 3.0),
        (5, 5.0),
        (6, 6.0),
    ]


def test_ping_health_unknown_database_precision_and_queries(data_dir: Path) -> None:
    new_db(data_dir, "m")
    with serving(data_dir, "--db", "m") as server:
        ping = get(f"{server.url}/ping")
        assert ping.status == 204 and ping.headers["X-Influxdb-Version"].startswith("tsadmin")
        health = get(f"{server.url}/health")
        assert health.status == 200 and health.json()["status"] == "pass"
        missing = post(f"{server.url}/write?db=nosuch", b"cpu v=1 1")
        assert missing.status == 404
        assert missing.json() == {"error": 'database not found: "nosuch"'}
        assert post(f"{server.url}/write", b"cpu v=1 1").status == 400
        bad = post(f"{server.url}/write?db=m&precision=fortnight", b"cpu v=1 1")
        assert bad.status == 400 and "precision" in str(bad.json()["error"])
        for precision, scale in (("n", 1), ("u", 10**3), ("ms", 10**6), ("s", 10**9)):
            assert post(f"{server.url}/write?db=m&precision={precision}", b"p v=1 2").status == 204
            assert post(f"{server.url}/write?db=m&precision={precision}", b"p v=1 2").status == 204
            assert any(r["ts"] == 2 * scale for r in rows(data_dir, "m", "p"))
        for precision, scale in (("m", 60 * 10**9), ("h", 3600 * 10**9)):
            assert post(f"{server.url}/write?db=m&precision={precision}", b"p v=1 3").status == 204
            assert any(r["ts"] == 3 * scale for r in rows(data_dir, "m", "p"))
        assert post(f"{server.url}/write?db=m", b"").status == 204
        # a server limited to named databases makes no others
        made = post(f"{server.url}/query", b"q=CREATE+DATABASE+other")
        assert made.status == 403 and "not among" in str(made.json()["error"])
        other = post(f"{server.url}/query", b"q=SELECT+*+FROM+cpu")
        assert other.status == 400 and "takes writes only" in str(other.json()["error"])
        assert get(f"{server.url}/nowhere").status == 404
        assert server.stop() == 0
    assert not (data_dir / "other").exists()


def test_gzip_bodies_and_the_size_limit_before_and_after_decompression(data_dir: Path) -> None:
    new_db(data_dir, "m")
    with serving(data_dir, "--max-body", "64KiB") as server:
        zipped = gzip.compress(b"".join(b"cpu v=%d %d\n" % (i, i) for i in range(1000)))
        ok = post(f"{server.url}/write?db=m", zipped, {"Content-Encoding": "gzip"})
        assert ok.status == 204
        big = b"cpu v=1 1\n" * 10_000  # 100 KB
        assert post(f"{server.url}/write?db=m", big).status == 413
        bomb = gzip.compress(b"cpu v=2 2\n" * 1_000_000)  # 10 MB once decompressed
        assert len(bomb) < 64 << 10
        too_big = post(f"{server.url}/write?db=m", bomb, {"Content-Encoding": "gzip"})
        assert too_big.status == 413 and "limit" in str(too_big.json()["error"])
        broken = post(f"{server.url}/write?db=m", b"not gzip at all", {"Content-Encoding": "gzip"})
        assert broken.status == 400
        assert get(f"{server.url}/ping").status == 204  # still serving
        assert server.stop() == 0
    got = rows(data_dir, "m", "cpu")
    assert len(got) == 1000 and {r["v"] for r in got} == set(map(float, range(1000)))


def test_token_is_required_when_set(data_dir: Path) -> None:
    new_db(data_dir, "m")
    with serving(data_dir, "--token", "t0k3n") as server:
        url = f"{server.url}/write?db=m"
        assert post(url, b"cpu v=1 1").status == 401
        assert post(url, b"cpu v=1 1", {"Authorization": "Token wrong"}).status == 401
        assert post(url, b"cpu v=1 1", {"Authorization": "Token t0k3n"}).status == 204
        assert post(url, b"cpu v=2 2", {"Authorization": "Bearer t0k3n"}).status == 204
        basic = base64.b64encode(b"telegraf:t0k3n").decode()
        assert post(url, b"cpu v=3 3", {"Authorization": f"Basic {basic}"}).status == 204
        assert post(f"{url}&u=telegraf&p=t0k3n", b"cpu v=4 4").status == 204
        assert post(f"{url}&u=telegraf&p=nope", b"cpu v=5 5").status == 401
        assert get(f"{server.url}/ping").status == 204  # ping, health and metrics stay open
        assert server.stop() == 0
    assert [r["v"] for r in rows(data_dir, "m", "cpu")] == [1.0, 2.0, 3.0, 4.0]


def test_listening_beyond_loopback_needs_a_token(data_dir: Path) -> None:
    new_db(data_dir, "m")
    port = free_port()
    refused = run_cli(data_dir, "serve", "--bind", f"0.0.0.0:{port}", timeout=30)
    assert refused.code == 2
    lines = refused.err.strip().splitlines()
    assert lines[0].startswith("Error: listening on 0.0.0.0:") and "without a token" in lines[0]
    assert "Traceback" not in refused.err
    # nothing was opened: the database is free for another writer
    assert run_cli(data_dir, "config", "set", "m", "wal_level", "sync").code == 0
    with serving(data_dir, "--token", "t") as server:  # a token makes any address allowed
        assert get(f"{server.url}/ping").status == 204
        server.stop()


def test_a_locked_database_or_a_taken_port_stops_serve_with_one_line(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "m")
    writer = start_writer(db_dir, "m", "--batches", "100000", "--rows", "10")
    try:
        wait_ready(writer)
        locked = run_cli(data_dir, "serve", "--bind", f"127.0.0.1:{free_port()}", timeout=30)
        assert locked.code == 4 and "Traceback" not in locked.err
        assert "locked" in locked.err.lower()
    finally:
        writer.kill()
        writer.communicate()
    with serving(data_dir) as server:
        taken = run_cli(
            data_dir, "serve", "--bind", server.url.removeprefix("http://"), "--db", "m"
        )
        assert taken.code == 4  # the first server holds the database's lock
    new_db(data_dir, "n")
    with serving(data_dir, "--db", "m") as server:
        port_taken = run_cli(
            data_dir, "serve", "--bind", server.url.removeprefix("http://"), "--db", "n"
        )
        assert port_taken.code == 1
        assert "cannot listen on" in port_taken.err and "Traceback" not in port_taken.err
        # it let go of database n again
        assert run_cli(data_dir, "config", "set", "n", "wal_level", "sync").code == 0


def test_the_default_memory_ceiling_is_an_eighth_of_the_machine_with_a_floor() -> None:
    from engine.server.service import ceiling_for, default_memory_ceiling

    assert ceiling_for(512 << 20) == 96 << 20  # a small machine: the floor
    assert ceiling_for(24 << 30) == 3 << 30  # this one: an eighth
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 96 << 20 <= default_memory_ceiling() <= max(96 << 20, physical // 8)


def test_memory_ceiling_answers_503_with_retry_after_then_recovers(data_dir: Path) -> None:
    new_db(data_dir, "m")
    with serving(data_dir, "--memory-limit", "1") as server:
        url = f"{server.url}/write?db=m"
        assert post(url, b"cpu v=1 1").status == 204
        busy = post(url, b"cpu v=2 2")
        assert busy.status == 503 and busy.headers["Retry-After"] == "1"
        assert "memory ceiling" in str(busy.json()["error"])
        for _ in range(100):  # the refusal asked for a checkpoint: room comes back
            if post(url, b"cpu v=2 2").status == 204:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("writes never accepted again")
        assert server.stop() == 0
    assert [r["v"] for r in rows(data_dir, "m", "cpu")] == [1.0, 2.0]


def test_retention_refusals_are_a_partial_write(data_dir: Path) -> None:
    new_db(data_dir, "m", retention="1d")
    now = time.time_ns()
    old = now - 3 * 86_400 * 10**9
    with serving(data_dir) as server:
        answer = post(f"{server.url}/write?db=m", f"cpu v=1 {now}\ncpu v=2 {old}\n".encode())
        assert server.stop() == 0
    assert answer.status == 400
    assert "older than the retention period" in str(answer.json()["error"])
    assert [r["v"] for r in rows(data_dir, "m", "cpu")] == [1.0]


def test_metrics_and_the_json_stats_log(data_dir: Path) -> None:
    new_db(data_dir, "m", wal_level="sync")
    with serving(data_dir, "--format", "json", "--log-interval", "1s") as server:
        for i in range(20):
            body = b"".join(b"cpu,host=h%d v=%d %d\n" % (j, i, i) for j in range(10))
            assert post(f"{server.url}/write?db=m", body).status == 204
        assert post(f"{server.url}/write?db=m", b"cpu v=\n").status == 400
        text = get(f"{server.url}/metrics").body.decode()
        time.sleep(1.5)
        assert server.stop() == 0
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("tsadmin_write_rows_total", (("database", "m"),))] == 200
    refused = {k: v for k, v in samples.items() if k[0] == "tsadmin_write_refused_lines_total"}
    [(labels, count)] = [(dict(k[1]), v) for k, v in refused.items()]
    assert count == 1 and labels["database"] == "m" and labels["reason"]
    assert samples[("tsadmin_wal_bytes", (("database", "m"),))] > 0  # what operators alert on
    assert samples[("tsadmin_http_requests_total", (("code", "204"), ("endpoint", "/write")))] == 20
    commits = samples[("tsadmin_commits_total", (("database", "m"),))]
    assert samples[("tsadmin_wal_fsyncs_total", (("database", "m"),))] >= commits >= 1
    assert samples[("tsadmin_commit_seconds_count", (("database", "m"),))] == commits
    events = [json.loads(line) for line in server.stderr.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "listening" and kinds[-2:] == ["stopping", "stopped"]
    stats = [e for e in events if e["event"] == "stats"]
    assert stats and sum(e["rows"] for e in stats) == 200
    assert {"rows_per_s", "fsyncs_per_commit", "commit_p99_ms", "time"} <= set(stats[0])
    assert events[-1]["rows"] == 200


# -- concurrency and stops ------------------------------------------------------------------


def _client(url: str, name: str, batches: int, acked: list[int], stop: threading.Event) -> None:
    """Post batches of 100 unique points; record each batch acknowledged with 204."""
    for batch in range(batches):
        if stop.is_set():
            return
        body = "".join(
            f"load,client={name},batch=b{batch} v={line}i {line}\n" for line in range(100)
        ).encode()
        try:
            answer = post(url, body)
        except OSError:
            return  # the server went away: this batch was not acknowledged
        if answer.status == 204:
            acked.append(batch)


def _load(url: str, names: list[str], batches: int, stop: threading.Event) -> dict[str, list[int]]:
    """Clients named ``names`` posting at once; the batches each had acknowledged."""
    acked: dict[str, list[int]] = {name: [] for name in names}
    threads = [
        threading.Thread(target=_client, args=(url, name, batches, acked[name], stop))
        for name in names
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return acked


def _stored_batches(data_dir: Path) -> dict[tuple[str, str], list[int]]:
    by_batch: dict[tuple[str, str], list[int]] = {}
    for row in rows(data_dir, "m", "load"):
        by_batch.setdefault((str(row["client"]), str(row["batch"])), []).append(int(row["v"]))
    return by_batch


def test_sixteen_concurrent_clients_lose_nothing_and_duplicate_nothing(data_dir: Path) -> None:
    new_db(data_dir, "m", wal_level="sync")
    with serving(data_dir) as server:
        names = [f"c{i}" for i in range(16)]
        acked = _load(f"{server.url}/write?db=m", names, 25, threading.Event())
        assert server.stop() == 0
    assert all(len(a) == 25 for a in acked.values())
    stored = _stored_batches(data_dir)
    assert len(stored) == 16 * 25
    assert all(sorted(values) == list(range(100)) for values in stored.values())
    assert sum(len(v) for v in stored.values()) == 16 * 25 * 100


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_or_killed_server_keeps_every_acknowledged_point(
    data_dir: Path, sig: int
) -> None:
    new_db(data_dir, "m", wal_level="sync")
    rng = random.Random(sig)
    for trial in range(3):
        stop = threading.Event()
        names = [f"t{trial}c{i}" for i in range(16)]
        results: dict[str, list[int]] = {}
        with serving(data_dir) as server:
            url = f"{server.url}/write?db=m"
            loader = threading.Thread(
                target=lambda u=url, n=names, r=results, s=stop: r.update(_load(u, n, 10_000, s))
            )
            loader.start()
            time.sleep(rng.uniform(0.3, 1.5))
            # connections accepted at the stop, their requests unread, once held it for
            # the whole drain timeout: it waits for running handlers and nothing else
            code = server.stop(sig, timeout=DRAIN_TIMEOUT_S / 2)
            stop.set()
            loader.join()
        stored = _stored_batches(data_dir)
        for name, batches in results.items():
            for batch in batches:
                values = stored.get((name, f"b{batch}"))
                assert values is not None and sorted(values) == list(range(100)), (
                    f"trial {trial}: acknowledged batch {batch} of client {name} lost"
                )
        assert sum(map(len, results.values())) > 0
        if sig == signal.SIGTERM:
            assert code == 0, server.stderr
            assert "stopped after" in server.stderr
        # every stored batch is whole: a transaction is all or nothing
        assert all(sorted(v) == list(range(100)) for v in stored.values())
    assert run_cli(data_dir, "db", "verify", "m").code == 0


# -- replicas -------------------------------------------------------------------------------


def _standby_rows(site_b: Path, store: Path) -> list[dict[str, object]]:
    follow = run_cli(site_b, "follow", str(store), "--db", "m", "--once")
    assert follow.code == 0, follow.err
    return rows(site_b, "m", "cpu")


def _primary_with_a_replica(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Site A with database m shipping to a local store, and an empty site B."""
    site_a, site_b, store = tmp_path / "a", tmp_path / "b", tmp_path / "store"
    site_a.mkdir()
    site_b.mkdir()
    new_db(site_a, "m", wal_level="sync")
    assert run_cli(site_a, "replica", "add", "m", str(store)).code == 0
    return site_a, site_b, store


def test_sigterm_ships_to_the_replica_before_exiting(tmp_path: Path) -> None:
    site_a, site_b, store = _primary_with_a_replica(tmp_path)
    # no shipping round while it serves: only the one at the stop can bring the rows
    with serving(site_a, env={"TSADMIN_SHIP_HOLD": "1"}) as server:
        for i in range(10):
            assert post(f"{server.url}/write?db=m", b"cpu v=%d %d\n" % (i, i)).status == 204
        assert server.stop() == 0
    assert [r["v"] for r in _standby_rows(site_b, store)] == [float(i) for i in range(10)]


def test_byrl_acknowledged_points_are_at_the_standby_after_a_kill(tmp_path: Path) -> None:
    site_a, site_b, store = _primary_with_a_replica(tmp_path)
    assert run_cli(site_a, "config", "set", "m", "wal_level", "byrl").code == 0
    with serving(site_a, env={"TSADMIN_SHIP_HOLD": "1"}) as server:
        for i in range(10):
            assert post(f"{server.url}/write?db=m", b"cpu v=%d %d\n" % (i, i)).status == 204
        server.stop(signal.SIGKILL)
    shutil.rmtree(site_a)  # the first site is lost
    assert [r["v"] for r in _standby_rows(site_b, store)] == [float(i) for i in range(10)]


def _wait_for_file(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.parametrize("promoted", [False, True])
def test_byrl_requests_are_answered_only_once_the_store_holds_them(
    tmp_path: Path, promoted: bool
) -> None:
    """The workers commit on while a group waits for the store; its answer still waits
    (held here in the shipping round) and, if the standby is promoted meanwhile, is a
    refusal of points the new primary does not hold."""
    site_a, site_b, store = _primary_with_a_replica(tmp_path)
    assert run_cli(site_a, "ingest", "lp", "m", "-", stdin="cpu v=0 0\n").code == 0
    assert run_cli(site_a, "config", "set", "m", "wal_level", "byrl").code == 0
    assert run_cli(site_b, "follow", str(store), "--db", "m", "--once").code == 0
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {"TSADMIN_SHIP_HOLD": "1", "TSADMIN_FAULTS": f"gate={gate};pause@ship.before_upload"}
    answers: dict[int, Answer] = {}
    with serving(site_a, env=env) as server:
        senders = [
            threading.Thread(
                target=lambda i=i: answers.__setitem__(
                    i, post(f"{server.url}/write?db=m", b"cpu v=%d %d\n" % (i, i))
                )
            )
            for i in (1, 2)
        ]
        senders[0].start()
        _wait_for_file(gate / "ship.before_upload.reached")
        senders[1].start()
        assert not answers  # the round that would carry them is held
        if promoted:
            assert run_cli(site_b, "promote", "m").code == 0
        (gate / "ship.before_upload.go").write_bytes(b"")
        for sender in senders:
            sender.join(timeout=60)
        server.stop()
    on_b = [r["v"] for r in rows(site_b, "m", "cpu")] if promoted else None
    if promoted:
        assert [a.status for a in answers.values()] == [403, 403], answers
        assert on_b == [0.0]
    else:
        assert [a.status for a in answers.values()] == [204, 204], answers
        assert [r["v"] for r in _standby_rows(site_b, store)] == [0.0, 1.0, 2.0]


def test_a_full_disk_answers_500_and_keeps_what_was_acknowledged(data_dir: Path) -> None:
    new_db(data_dir, "m", wal_level="sync")
    faults = {"TSADMIN_FAULTS": "enospc@wal.append:4"}
    answers = []
    with serving(data_dir, env=faults) as server:
        for i in range(6):
            answers.append(post(f"{server.url}/write?db=m", b"cpu v=%d %d\n" % (i, i)))
        assert get(f"{server.url}/ping").status == 204  # the server itself carries on
        server.stop()
    statuses = [a.status for a in answers]
    assert 204 in statuses and 500 in statuses
    assert statuses == sorted(statuses, key=lambda s: s == 500)  # once full, it stays full
    failed = next(a for a in answers if a.status == 500)
    assert "space" in str(failed.json()["error"]).lower()
    assert "Traceback" not in server.stderr
    acked = [float(i) for i, a in enumerate(answers) if a.status == 204]
    assert [r["v"] for r in rows(data_dir, "m", "cpu")] == acked


def test_a_standby_is_not_served(tmp_path: Path) -> None:
    site_a, site_b, store = _primary_with_a_replica(tmp_path)
    assert run_cli(site_a, "ingest", "lp", "m", "-", stdin="cpu v=1 1\n").code == 0
    assert run_cli(site_b, "follow", str(store), "--db", "m", "--once").code == 0
    named = run_cli(site_b, "serve", "--bind", f"127.0.0.1:{free_port()}", "--db", "m")
    assert named.code == 9 and "standby" in named.err and "Traceback" not in named.err
    with serving(site_b) as server:
        refused = post(f"{server.url}/write?db=m", b"cpu v=2 2\n")
        assert refused.status == 403 and "standby" in str(refused.json()["error"])
        assert server.stop() == 0
    assert [r["v"] for r in rows(site_b, "m", "cpu")] == [1.0]
