"""The examples run as written: the nightly cron script and the runbooks' commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import CLEAN_ENV, ROOT


def run_script(script: Path, *args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    tsadmin = Path(sys.executable).parent / "tsadmin"
    env = {
        **CLEAN_ENV,
        "TSADMIN": str(tsadmin),
        "TSADMIN_DATA_DIR": str(data_dir),
        "FULL_BACKUP_WEEKDAY": "never",  # the same archives whatever the day
    }
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_nightly_backup_script(data_dir: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    script = ROOT / "examples" / "cron" / "nightly-backup.sh"
    cli("db", "create", "metrics")
    cli("ingest", "lp", "metrics", "-", stdin="cpu,host=a v=1 1\n")
    backups = tmp_path / "backups"
    for _ in range(3):
        done = run_script(script, "metrics", str(backups), "2", "0", "0", data_dir=data_dir)
        assert done.returncode == 0, done.stderr
        assert "verified" in done.stderr and "pruned" in done.stderr
    listed = cli("--format", "json", "backup", "list", str(backups)).json()
    assert 2 <= len(listed) <= 3  # keep-last 2, plus a base a kept incremental needs
    for archive in listed:
        assert cli("backup", "verify", str(backups / archive["name"])).code == 0
    failed = run_script(script, "nosuchdb", str(backups), data_dir=data_dir)
    assert failed.returncode != 0 and "FAILED" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_crontab_line_calls_the_script() -> None:
    crontab = (ROOT / "examples" / "cron" / "crontab").read_text()
    line = next(
        x
        for x in crontab.splitlines()
        if x and not x.startswith(("#", "MAILTO", "TSADMIN", "PATH"))
    )
    path_line = next(x for x in crontab.splitlines() if x.startswith("PATH="))
    assert ".venv/bin" in path_line  # cron's own PATH has no tsadmin
    fields = line.split()
    assert len(fields) > 6 and "nightly-backup.sh" in line
    minute, hour, day, month, weekday = fields[:5]  # a schedule cron accepts
    assert all(re.fullmatch(r"[0-9*/,-]+", f) for f in (minute, hour, day, month, weekday))


def test_nightly_script_finds_tsadmin_with_crons_path(data_dir: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """Under cron (PATH=/usr/bin:/bin, no TSADMIN) the script finds the checkout's tsadmin."""
    if not (ROOT / ".venv" / "bin" / "tsadmin").exists():
        print("skipped: no .venv in this checkout (make test creates it)")
        return
    assert cli("db", "create", "m").code == 0
    assert cli("ingest", "lp", "m", "-", stdin="cpu v=1 1\n").code == 0
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TSADMIN_DATA_DIR": str(data_dir)}
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "cron" / "nightly-backup.sh"), "m", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def _unit(path: Path) -> dict[str, str]:
    """The key=value lines of a systemd unit (the last of a repeated key)."""
    keys = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            keys[key.strip()] = value.split("#")[0].strip()
    return keys


def test_serve_examples_run_as_written(data_dir: Path, tmp_path: Path) -> None:
    """The systemd unit's command line serves and stops on its KillSignal with exit 0
    within TimeoutStopSec; the Telegraf snippet's settings, sent as Telegraf sends them,
    are written; RestartPreventExitStatus is the exit of a refused start."""
    import base64
    import gzip
    import signal
    import tomllib
    import urllib.request

    from engine.server import DEFAULT_BIND
    from tests.servers import free_port, wait_for_http

    unit = _unit(ROOT / "examples" / "serve" / "tsadmin-serve.service")
    telegraf = tomllib.loads((ROOT / "examples" / "serve" / "telegraf.conf").read_text())
    output = telegraf["outputs"]["influxdb"][0]
    assert output["urls"] == [f"http://{DEFAULT_BIND}"]
    assert unit["ExecStart"].split()[0].endswith("/.venv/bin/tsadmin")
    port = free_port()
    args = unit["ExecStart"].split()[1:]
    args = [a.replace(DEFAULT_BIND, f"127.0.0.1:{port}") for a in args]
    assert f"127.0.0.1:{port}" in args
    # a new host: the data dir is the unit's state directory, which does not exist yet
    assert unit["StateDirectory"] == "tsadmin" and unit["StateDirectoryMode"] == "0700"
    assert unit["Environment"] == f"TSADMIN_DATA_DIR=/var/lib/{unit['StateDirectory']}"
    state_dir = tmp_path / "var-lib" / unit["StateDirectory"]
    env = {**CLEAN_ENV, "TSADMIN_DATA_DIR": str(state_dir), "TSADMIN_TOKEN": "tok"}
    server = subprocess.Popen(
        [sys.executable, "-m", "tsadmin", *args], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for_http(f"http://127.0.0.1:{port}/ping")
        password = output["password"].replace("${TSADMIN_TOKEN}", "tok")
        credentials = base64.b64encode(f"{output['username']}:{password}".encode()).decode()
        auth = {"Authorization": f"Basic {credentials}"}
        base = f"http://127.0.0.1:{port}"
        name = output["database"]
        create = urllib.request.Request(
            f"{base}/query", data=f'q=CREATE DATABASE "{name}"'.encode(), headers=auth
        )
        assert urllib.request.urlopen(create, timeout=30).status == 200
        assert output["content_encoding"] == "gzip"
        write = urllib.request.Request(
            f"{base}/write?db={name}",
            data=gzip.compress(b"cpu,host=a usage_idle=99.5 1\n"),
            headers={**auth, "Content-Encoding": "gzip"},
        )
        assert urllib.request.urlopen(write, timeout=30).status == 204
        server.send_signal(getattr(signal, unit["KillSignal"]))
        _, err = server.communicate(timeout=int(unit["TimeoutStopSec"]))
        assert server.returncode == 0, err
        assert all(line.startswith("{") for line in err.splitlines())  # --format json logs
        assert (state_dir / name).is_dir() and state_dir.stat().st_mode & 0o777 == 0o700
    finally:
        if server.poll() is None:
            server.kill()
    refused = subprocess.run(
        [sys.executable, "-m", "tsadmin", "serve", "--bind", f"0.0.0.0:{free_port()}"],
        env={**CLEAN_ENV, "TSADMIN_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(refused.returncode) == unit["RestartPreventExitStatus"]


def test_the_readmes_first_example_runs_as_written(tmp_path: Path) -> None:
    """README "Using it", from the checkout with the environment's bin on PATH, against a
    data directory that does not exist yet: every line exits 0 and does what it says
    (issue 25: it set a 30-day retention, then loaded 2024 samples: 0 rows, exit 7)."""
    import re

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Using it", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None
    data_dir = tmp_path / "tsdata"
    env = {
        **CLEAN_ENV,
        "PATH": f"{Path(sys.executable).parent}:{CLEAN_ENV['PATH']}",
        "TSADMIN_DATA_DIR": str(data_dir),
    }
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.group(1)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "rejected" not in done.stderr  # the samples load whole
    assert "ingested 1,000 rows into cpu" in done.stderr, done.stderr
    assert "ingested 300 rows into weather" in done.stderr
    assert "would remove 1,300 rows" in done.stderr  # the retention dry run: every sample
    assert done.stdout.count("host_0") == 10  # the select printed its ten rows
