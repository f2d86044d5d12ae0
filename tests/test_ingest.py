"""Ingest details: a slow producer is committed as it goes; CSV times, quoting, compression."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import zstandard

from engine import Database
from tests.conftest import CLEAN_ENV

PRODUCER = """
import sys, time
for i in range(3):
    sys.stdout.write(f"cpu,host=h v={i} {i}\\n"); sys.stdout.flush(); time.sleep(0.3)
time.sleep(4)
sys.stdout.write("cpu,host=h v=9 9\\n")
"""


def visible_rows(data_dir: Path) -> int:
    db = Database.open(data_dir / "p", "p", readonly=True)
    return db.scan("cpu").num_rows if "cpu" in db.tables() else 0


def test_a_slow_pipe_is_committed_as_it_goes(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "p")
    producer = subprocess.Popen([sys.executable, "-c", PRODUCER], stdout=subprocess.PIPE)
    ingest = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tsadmin",
            "--data-dir",
            str(data_dir),
            "ingest",
            "lp",
            "p",
            "-",
            "--flush-interval",
            "0.5",
        ],
        stdin=producer.stdout,
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert producer.stdout is not None
    producer.stdout.close()
    deadline = time.monotonic() + 3.5  # the producer is silent from ~1 s to ~5 s
    seen = 0
    while time.monotonic() < deadline and seen < 3:
        time.sleep(0.2)
        seen = visible_rows(data_dir)
    assert seen == 3, "rows that arrived were not committed while the producer was quiet"
    assert ingest.poll() is None, "the ingest ended early: the test proves nothing"
    _, err = ingest.communicate(timeout=30)
    assert ingest.returncode == 0, err
    assert visible_rows(data_dir) == 4


def test_csv_epoch_strptime_quoted_newlines_and_zstd(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "c", "--precision", "ms")
    epoch = tmp_path / "epoch.csv"
    epoch.write_text('t,site,level,comment\n1700000000,a,1.5,"two\nlines"\n1700000060,b,,\n')
    done = cli(
        "ingest",
        "csv",
        "c",
        str(epoch),
        "--table",
        "water",
        "--ts-column",
        "t",
        "--ts-format",
        "s",
        "--tags",
        "site",
    )
    assert done.code == 0, done.err
    rows = cli("--format", "json", "select", "c", "water", "--epoch").json()
    assert [(r["ts"], r["site"], r["level"], r["comment"]) for r in rows] == [
        (1700000000000, "a", 1.5, "two\nlines"),
        (1700000060000, "b", None, None),
    ]
    local = tmp_path / "local.csv.zst"
    text = "when,site,level\n22/11/2026 10:00:00,a,2.5\n22/11/2026 10:05:00,a,3.5\n"
    local.write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    done = cli(
        "ingest",
        "csv",
        "c",
        str(local),
        "--table",
        "water",
        "--ts-column",
        "when",
        "--ts-format",
        "%d/%m/%Y %H:%M:%S",
        "--tags",
        "site",
    )
    assert done.code == 0, done.err
    later = cli(
        "--format", "json", "select", "c", "water", "--start", "2026-11-22T00:00:00Z"
    ).json()
    assert [(r["ts"], r["level"]) for r in later] == [
        ("2026-11-22T10:00:00.000Z", 2.5),
        ("2026-11-22T10:05:00.000Z", 3.5),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("t,v\nnot-a-time,1\n")
    refused = cli(
        "ingest", "csv", "c", str(bad), "--table", "w2", "--ts-column", "t", "--ts-format", "s"
    )
    assert refused.code == 6 and "Traceback" not in refused.err


def test_csv_table_column_and_schema(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "m")
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("ts,measurement,host,value\n1,cpu,a,1\n2,mem,a,2\n3,cpu,b,3\n")
    done = cli(
        "--format",
        "json",
        "ingest",
        "csv",
        "m",
        str(mixed),
        "--table-column",
        "measurement",
        "--tags",
        "host",
        "--schema",
        "value:float64",
    )
    assert done.code == 0, done.err
    assert done.json()["tables"] == ["cpu", "mem"] and done.json()["rows"] == 3
    cpu = cli("--format", "json", "select", "m", "cpu", "--epoch").json()
    assert [(r["ts"], r["host"], r["value"]) for r in cpu] == [(1, "a", 1.0), (3, "b", 3.0)]
    shown = cli("--format", "json", "table", "show", "m", "mem").json()
    assert {c["column"]: c["type"] for c in shown["columns"]}[
        "value"
    ] == "float64"  # not inferred int64
    bad_name = tmp_path / "bad.csv"
    bad_name.write_text("ts,measurement,value\n1,no-good,1\n")
    refused = cli("ingest", "csv", "m", str(bad_name), "--table-column", "measurement")
    assert refused.code == 6 and "invalid table name" in refused.err
    assert cli("ingest", "csv", "m", str(mixed), "--schema", "value:decimal").code == 2
