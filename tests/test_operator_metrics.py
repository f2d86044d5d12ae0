"""What operators alert on (issue 25): the same figures in ``db stats --format json``,
``tsadmin metrics`` (printed and as a node_exporter textfile) and serve's /metrics,
scraped by a real Prometheus; the example alert rules checked and unit-tested by
``promtool``."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, new_db, run_cli
from tests.servers import free_port, wait_for_http
from tests.test_serve import post, serving

RULES = ROOT / "examples" / "prometheus" / "tsadmin-alerts.yml"
NOW_NS = time.time_ns()


def lp(*values: int) -> str:
    return "".join(f"cpu,host=a v={v} {NOW_NS + v}\n" for v in values)


def health_of(data_dir: Path, db: str = "m") -> dict[str, Any]:
    result = run_cli(data_dir, "--format", "json", "metrics", db)
    assert result.code == 0, result.err
    [one] = result.json()
    assert isinstance(one, dict)
    return one


def test_lag_is_the_age_of_the_oldest_unconfirmed_commit(tmp_path: Path) -> None:
    data, store = tmp_path / "d", tmp_path / "store"
    data.mkdir()
    new_db(data, "m", wal_level="sync")
    assert run_cli(data, "replica", "add", "m", str(store)).code == 0
    assert run_cli(data, "ingest", "lp", "m", "-", stdin=lp(1)).code == 0
    caught_up = health_of(data)["replicas"][0]
    assert caught_up["behind_records"] == 0 and caught_up["lag_seconds"] == 0
    shutil.rmtree(store)
    store.write_text("not a directory")  # the store cannot take the next commit
    committed = time.time()
    assert run_cli(data, "ingest", "lp", "m", "-", stdin=lp(2)).code == 0
    behind = health_of(data)["replicas"][0]
    assert behind["behind_records"] > 0
    assert 0 < behind["lag_seconds"] <= time.time() - committed + 1
    store.unlink()
    gone = run_cli(data, "replicate", "m", "--once")  # a vanished store is not remade
    assert gone.code == 1 and "does not exist" in gone.err, gone.err
    store.mkdir()  # the operator brings it back
    assert run_cli(data, "replicate", "m", "--once").code == 0
    again = health_of(data)["replicas"][0]
    assert again["behind_records"] == 0 and again["lag_seconds"] == 0


def test_backup_create_records_the_last_backup_per_store(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    new_db(data, "m", wal_level="sync")
    assert run_cli(data, "ingest", "lp", "m", "-", stdin=lp(1)).code == 0
    assert health_of(data)["backups"] == []
    before = time.time()
    assert run_cli(data, "backup", "create", "m", "--to", str(tmp_path / "nightly")).code == 0
    assert run_cli(data, "backup", "create", "m", "--to", str(tmp_path / "weekly")).code == 0
    stats = run_cli(data, "--format", "json", "db", "stats", "m").json()
    assert isinstance(stats, dict)
    backups = {b["store"]: b for b in stats["health"]["backups"]}
    assert set(backups) == {str(tmp_path / "nightly"), str(tmp_path / "weekly")}
    for item in backups.values():
        at = datetime.strptime(item["at"], "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        assert item["kind"] == "database" and before - 0.001 <= at <= time.time()
        assert item["age_seconds"] >= 0
    assert stats["health"]["wal_bytes"] == stats["wal_bytes"]
    assert stats["health"]["checkpoint_age_seconds"] >= 0


def test_rows_ingest_rejected_are_counted_by_reason(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    assert run_cli(data, "db", "create", "m", "--retention", "30d").code == 0
    old = "cpu v=1 1000000000\ncpu v=2 2000000000\n"  # 1970: beyond the retention
    for _ in range(2):
        assert (
            run_cli(
                data, "ingest", "lp", "m", "-", "--on-error", "skip", stdin=old + "cpu v=\n"
            ).code
            == 7
        )
    rejected = health_of(data)["rejected"]
    assert sum(rejected.values()) == 6 and len(rejected) == 2, rejected
    assert 4 in rejected.values() and 2 in rejected.values()


def test_a_textfile_for_node_exporter(tmp_path: Path) -> None:
    data, out = tmp_path / "d", tmp_path / "textfile"
    data.mkdir()
    new_db(data, "m", wal_level="sync")
    new_db(data, "n", wal_level="sync")
    assert run_cli(data, "ingest", "lp", "m", "-", "--on-error", "skip", stdin="cpu v=\n").code == 7
    missing = run_cli(data, "metrics", "--textfile", str(out))
    assert missing.code == 2 and "does not exist" in missing.err
    out.mkdir()
    assert run_cli(data, "metrics", "--textfile", str(out)).code == 0
    assert sorted(p.name for p in out.iterdir()) == ["tsadmin.prom"]  # no temporary left
    text = (out / "tsadmin.prom").read_text()
    assert 'tsadmin_ingest_rejected_rows_total{database="m",reason=' in text
    for name in ("m", "n"):
        assert f'tsadmin_wal_bytes{{database="{name}"}}' in text
        assert f'tsadmin_checkpoint_age_seconds{{database="{name}"}}' in text


# -- the example rules, by promtool ------------------------------------------------------

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (apt-get install prometheus; make test installs it as root)",
)


@needs_promtool
def test_the_example_rules_are_valid() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_lag_rule_fires_after_two_minutes_past_the_rpo(tmp_path: Path) -> None:
    """promtool's rule unit test: lag over 60 s for 2 minutes pages; a lag that recovers
    within 2 minutes does not."""
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'tsadmin_replica_lag_seconds{database="m",replica="s3://b/m"}',
                        "values": "0 90 90 90 90",
                    },
                    {
                        "series": 'tsadmin_replica_lag_seconds{database="n",replica="s3://b/n"}',
                        "values": "0 90 0 0 0",
                    },
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "TsadminReplicationLagAboveRPO"},
                    {
                        "eval_time": "4m",
                        "alertname": "TsadminReplicationLagAboveRPO",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "page",
                                    "database": "m",
                                    "replica": "s3://b/m",
                                },
                                "exp_annotations": {
                                    "summary": "m: replica s3://b/m is 1m 30s behind",
                                    "runbook": "examples/runbooks/second-site.md (step 6)",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "rules.test.yml"
    path.write_text(json.dumps(tests))  # JSON is YAML
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- a real Prometheus scraping serve and node_exporter ------------------------------------

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-node-exporter") is None,
    reason="prometheus or prometheus-node-exporter not installed (apt-get install prometheus; "
    "make test installs them as root)",
)


@contextmanager
def running(cmd: list[str], ready: str) -> Iterator[None]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if not wait_for_http(ready):
            proc.kill()
            raise AssertionError(f"{cmd[0]} did not start: {proc.communicate()[1][-2000:]}")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def query(prometheus: str, expr: str) -> list[dict[str, Any]] | None:
    """The query's result; None while Prometheus answers 503 (still starting: its
    /-/ready and query API say so until the storage is open)."""
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 503:
            return None
        raise
    assert body["status"] == "success", body
    result = body["data"]["result"]
    assert isinstance(result, list)
    return result


def until_present(prometheus: str, expr: str, seconds: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while True:
        found = query(prometheus, expr)
        if found:
            return found
        assert time.monotonic() < deadline, f"Prometheus never had {expr}"
        time.sleep(0.2)


@needs_prometheus
def test_prometheus_scrapes_serve_and_the_textfile(tmp_path: Path) -> None:
    data, textfiles = tmp_path / "d", tmp_path / "textfile"
    data.mkdir()
    textfiles.mkdir()
    new_db(data, "m", wal_level="sync")
    new_db(data, "cron", wal_level="sync")
    assert run_cli(data, "backup", "create", "cron", "--to", str(tmp_path / "bk")).code == 0
    assert run_cli(data, "metrics", "cron", "--textfile", str(textfiles)).code == 0
    exporter = f"127.0.0.1:{free_port()}"
    with (
        serving(data, "m") as server,  # the database positional, as everywhere
        running(
            [
                "prometheus-node-exporter",
                f"--web.listen-address={exporter}",
                f"--collector.textfile.directory={textfiles}",
                "--collector.disable-defaults",
                "--collector.textfile",
            ],
            f"http://{exporter}/metrics",
        ),
    ):
        assert post(f"{server.url}/write?db=m", b"cpu v=1 1\ncpu v=oops 2\n").status == 400
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "tsadmin",
                            "static_configs": [{"targets": [server.url.split("//", 1)[1]]}],
                        },
                        {"job_name": "node", "static_configs": [{"targets": [exporter]}]},
                    ],
                }
            )
        )
        with running(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            f"http://127.0.0.1:{port}/-/ready",
        ):
            prom = f"http://127.0.0.1:{port}"
            served = until_present(prom, 'tsadmin_wal_bytes{job="tsadmin",database="m"}')
            assert float(served[0]["value"][1]) > 0
            refused = until_present(prom, "tsadmin_write_refused_lines_total")
            assert refused[0]["metric"]["database"] == "m"
            assert refused[0]["metric"]["reason"] and float(refused[0]["value"][1]) == 1
            cron = until_present(prom, 'tsadmin_last_backup_timestamp_seconds{job="node"}')
            assert cron[0]["metric"]["database"] == "cron"
            assert abs(float(cron[0]["value"][1]) - time.time()) < 600


def test_backups_finishing_at_once_each_record_themselves(tmp_path: Path) -> None:
    """Three backups of one database finishing together once lost a record or failed on
    a temporary file another had renamed away (seen in test_operator_trust)."""
    from concurrent.futures import ThreadPoolExecutor

    from engine.db import health

    db_dir = tmp_path / "m"
    db_dir.mkdir()

    def record(i: int) -> None:
        for k in range(25):
            health.record_backup(db_dir, f"/store/{i}", f"/store/{i}/b{k}", "database", False, k)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(record, range(8)))
    assert sorted(b.store for b in health.load_backups(db_dir)) == [f"/store/{i}" for i in range(8)]
    assert {b.at for b in health.load_backups(db_dir)} == {24.0}
