"""The real tsadmin CLI in a subprocess: commands, formats, errors and exit codes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from pathlib import Path

import pytest

LP = """# cpu metrics
cpu,host=a,region=eu usage=1.5,count=3i 1700000000000000000
cpu,host=b,region=us usage=2.5,count=4i 1700000060000000000

cpu,host=a,region=eu usage=9.5 1700000000000000000
mem,host=a free=100i,ok=true 1700000000000000000
"""


@pytest.fixture
def loaded(cli):  # type: ignore[no-untyped-def]
    assert cli("db", "create", "m").code == 0
    result = cli("--format", "json", "ingest", "lp", "m", "-", stdin=LP)
    assert result.code == 0, result.err
    assert result.json()["rows"] == 4
    return cli


def test_db_lifecycle(cli) -> None:  # type: ignore[no-untyped-def]
    created = cli(
        "--format",
        "json",
        "db",
        "create",
        "m",
        "--precision",
        "ms",
        "--wal-level",
        "2",
        "--wal-fsync-period",
        "250",
        "--checkpoint-interval",
        "30s",
        "--partition",
        "7d",
    )
    assert created.code == 0, created.err
    assert created.json()["settings"] == {
        "precision": "ms",
        "wal_level": "flush",
        "wal_fsync_period": 250,
        "checkpoint_interval": "30s",
        "partition": "1w",
        "max_line_bytes": 1048576,
        "max_tags_per_series": 1024,
        "max_fields_per_table": 10000,
    }
    assert cli("db", "create", "m").code == 1
    listed = cli("--format", "json", "db", "list").json()
    assert [d["name"] for d in listed] == ["m"]
    shown = cli("--format", "json", "db", "show", "m").json()
    assert shown["settings"]["precision"] == "ms" and shown["writer_pid"] is None
    refused = cli("db", "drop", "m")
    assert refused.code == 2 and "--yes" in refused.err
    assert cli("db", "drop", "m", "--yes").code == 0
    assert cli("--format", "json", "db", "list").json() == []
    missing = cli("db", "show", "m")
    assert missing.code == 1 and missing.err.startswith("Error: database m does not exist")


@pytest.mark.parametrize(
    "name", ["x" * 65, "../etc", "", ".hidden", "a b", "a/b", "abc\n", "..", "Zürich"]
)
def test_bad_names_are_refused(cli, name: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("db", "create", name)
    assert result.code == 2, result
    assert "invalid database name" in result.err and "Traceback" not in result.err
    assert cli("--format", "json", "db", "list").json() == []


@pytest.mark.parametrize("name", ["1abc", "a-b", "web.prod", "x" * 64, "_1"])
def test_path_safe_names_with_dots_and_dashes_are_databases(cli, name: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("db", "create", name).code == 0
    assert [d["name"] for d in cli("--format", "json", "db", "list").json()] == [name]


def test_select_with_range_filter_limit_and_formats(loaded) -> None:  # type: ignore[no-untyped-def]
    rows = loaded("--format", "json", "select", "m", "cpu").json()
    assert rows == [
        {
            "ts": "2023-11-14T22:13:20.000000000Z",
            "host": "a",
            "region": "eu",
            "usage": 9.5,
            "count": 3,
        },
        {
            "ts": "2023-11-14T22:14:20.000000000Z",
            "host": "b",
            "region": "us",
            "usage": 2.5,
            "count": 4,
        },
    ]
    assert len(loaded("--format", "json", "select", "m", "cpu", "--where", "host=b").json()) == 1
    window = loaded(
        "--format",
        "json",
        "select",
        "m",
        "cpu",
        "--start",
        "2023-11-14T22:14:00Z",
        "--end",
        "2023-11-14T22:15:00Z",
        "--epoch",
    ).json()
    assert [r["ts"] for r in window] == [1700000060000000000]
    assert len(loaded("--format", "json", "select", "m", "cpu", "--limit", "1").json()) == 1
    out = loaded("--format", "csv", "select", "m", "mem").out
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert parsed[0]["free"] == "100" and parsed[0]["ok"] == "true"
    table = loaded("select", "m", "cpu").out
    assert "host" in table.splitlines()[0]
    bad = loaded("select", "m", "cpu", "--where", "nope=1")
    assert bad.code == 2 and "has no tag 'nope'" in bad.err
    lines = loaded("--format", "jsonl", "select", "m", "cpu").out.splitlines()
    assert [json.loads(line) for line in lines] == rows
    # no rows: CSV still has its header, JSON is an empty array, JSON lines nothing at all
    nothing = ("select", "m", "cpu", "--where", "host=zz")
    assert loaded("--format", "csv", *nothing).out == '"ts","host","region","count","usage"\n'
    assert loaded("--format", "json", *nothing).out == "[]\n"
    assert loaded("--format", "jsonl", *nothing).out == ""
    assert loaded(*nothing).out == "(none)\n"


def test_config_names_numbers_kwdb_keys_and_durations(loaded) -> None:  # type: ignore[no-untyped-def]
    assert loaded("config", "get", "m", "wal_level").out.strip() == "sync"
    changed = loaded("--format", "json", "config", "set", "m", "ts.wal.wal_level", "2").json()
    assert changed == {  # JSON only gains fields (dry_run, expired came with issue 25)
        "database": "m",
        "key": "wal_level",
        "old": "sync",
        "new": "flush",
        "warning": None,
        "dry_run": False,
        "expired": None,
    }
    assert loaded("config", "set", "m", "ts.wal.checkpoint_interval", "5m").code == 0
    assert loaded("config", "set", "m", "wal_fsync_period", "2s").code == 0
    values = loaded("--format", "json", "config", "get", "m").json()
    assert values["checkpoint_interval"] == "5m" and values["wal_fsync_period"] == 2000
    assert loaded("config", "set", "m", "wal_level", "off").code == 0
    assert loaded("config", "get", "m", "ts.wal.wal_level").out.strip() == "off"
    for key, value in [
        ("wal_level", "fast"),
        ("checkpoint_interval", "soon"),
        ("nope", "1"),
        ("wal_fsync_period", "999999999"),
    ]:
        result = loaded("config", "set", "m", key, value)
        assert result.code == 2, (key, value, result)
        assert result.err.startswith("Error: ")
    byrl = loaded("config", "set", "m", "wal_level", "byrl")
    assert byrl.code == 2 and "no replica" in byrl.err
    # data survived all of it
    assert len(loaded("--format", "json", "select", "m", "cpu").json()) == 2


def test_stats_tables_checkpoint_compact(loaded) -> None:  # type: ignore[no-untyped-def]
    stats = loaded("--format", "json", "db", "stats", "m").json()
    assert stats["segment_rows"] + stats["wal_rows"] >= 3
    tables = loaded("--format", "json", "table", "list", "m").json()
    assert [t["table"] for t in tables] == ["cpu", "mem"]
    shown = loaded("--format", "json", "table", "show", "m", "cpu").json()
    assert shown["rows"] == 2 and shown["series"] == 2
    assert {c["column"]: c["type"] for c in shown["columns"]} == {
        "ts": "timestamp[ns]",
        "host": "string",
        "region": "string",
        "usage": "float64",
        "count": "int64",
    }
    loaded("ingest", "lp", "m", "-", stdin="cpu,host=c usage=1 1700000120000000000\n")
    ckpt = loaded("--format", "json", "checkpoint", "--all").json()
    assert ckpt[0]["database"] == "m"
    compacted = loaded("--format", "json", "compact", "m").json()
    assert compacted["segments_after"] <= compacted["segments_before"]
    assert loaded("checkpoint").code == 2


def test_table_drop(loaded) -> None:  # type: ignore[no-untyped-def]
    assert loaded("table", "drop", "m", "mem").code == 2
    assert loaded("table", "drop", "m", "mem", "--yes").code == 0
    assert [t["table"] for t in loaded("--format", "json", "table", "list", "m").json()] == ["cpu"]
    gone = loaded("select", "m", "mem")
    assert gone.code == 1 and "does not exist" in gone.err
    # a table of the same name starts empty
    loaded("ingest", "lp", "m", "-", stdin="mem,host=z free=1i 1\n")
    assert len(loaded("--format", "json", "select", "m", "mem").json()) == 1


def test_checksum_is_order_and_layout_independent(cli) -> None:  # type: ignore[no-untyped-def]
    lines = [f"cpu,host=h{i % 3} v={i}i,w={i * 0.5} {1700000000000000000 + i}" for i in range(200)]
    cli("db", "create", "a")
    cli("db", "create", "b")
    cli("ingest", "lp", "a", "-", "--batch-rows", "7", stdin="\n".join(lines) + "\n")
    cli("checkpoint", "a")
    cli("ingest", "lp", "b", "-", stdin="\n".join(reversed(lines)) + "\n")
    one = cli("--format", "json", "db", "checksum", "a").json()
    two = cli("--format", "json", "db", "checksum", "b").json()
    assert one["sha256"] == two["sha256"] and one["rows"] == 200
    cli("ingest", "lp", "b", "-", stdin="cpu,host=h0 v=999i 1700000000000000000\n")
    assert cli("--format", "json", "db", "checksum", "b").json()["sha256"] != one["sha256"]


def test_bad_line_stops_with_location_and_nothing_of_its_batch(cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "m")
    good = [f"cpu v={i} {i}" for i in range(10)]
    text = "\n".join([*good[:5], "cpu v=oops 99", *good[5:]]) + "\n"
    result = cli("ingest", "lp", "m", "-", "--batch-rows", "3", stdin=text)
    assert result.code == 6
    assert "stdin:6:" in result.err and "oops" in result.err
    assert "3 rows committed before it" in result.err and "re-running is safe" in result.err
    assert len(cli("--format", "json", "select", "m", "cpu").json()) == 3
    conflict = cli("ingest", "lp", "m", "-", stdin='cpu v="text" 100\n')
    assert conflict.code == 6 and "field 'v'" in conflict.err and "float64" in conflict.err


def test_skip_writes_rejects_file(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "m")
    rejects = tmp_path / "rejects.lp"
    text = "cpu v=1 1\ncpu v= 2\ncpu v=3 3\nbad line\n"
    result = cli(
        "--format",
        "json",
        "ingest",
        "lp",
        "m",
        "-",
        "--on-error",
        "skip",
        "--rejects",
        str(rejects),
        stdin=text,
    )
    assert result.code == 7, result.err  # a partial load
    assert result.json()["rows"] == 2 and result.json()["rejected"] == 2
    kept = rejects.read_text().splitlines()
    assert kept[1] == "cpu v= 2" and kept[3] == "bad line" and kept[0].startswith("# stdin:2")


def test_csv_ingest_with_tags_and_gzip(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "m")
    path = tmp_path / "weather.csv.gz"
    with gzip.open(path, "wt") as out:
        out.write(
            'time,city,temp,note\n2024-01-01T00:00:00Z,Oslo,-3.5,"cold, dry"\n'
            "2024-01-01T01:00:00+01:00,Rome,11.0,\n"
        )
    result = cli(
        "--format", "json", "ingest", "csv", "m", str(path), "--ts-column", "time", "--tags", "city"
    )
    assert result.code == 0, result.err
    assert result.json()["tables"] == ["weather"]
    rows = cli("--format", "json", "select", "m", "weather").json()
    assert [(r["city"], r["ts"], r["note"]) for r in rows] == [
        ("Oslo", "2024-01-01T00:00:00.000000000Z", "cold, dry"),
        ("Rome", "2024-01-01T00:00:00.000000000Z", None),
    ]


def test_no_traceback_for_unknown_things(cli) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ["select", "nodb", "t"],
        ["db", "stats", "nodb"],
        ["ingest", "lp", "nodb", "/no/file"],
        ["config", "get", "nodb"],
        ["--format", "xml", "db", "list"],
        ["db", "frobnicate"],
    ):
        result = cli(*args)
        assert result.code in (1, 2), (args, result)
        assert "Traceback" not in result.err


def test_version_and_help(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli("--version").out.startswith("tsadmin ")
    assert "checkpoint" in cli("--help").out


def test_one_version_everywhere(cli, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One source (engine.__version__): the installed package, --version, the man pages,
    what an archive records, and a released section of the CHANGELOG all say it."""
    import importlib.metadata
    import json

    from engine import __version__

    assert importlib.metadata.version("tsadmin") == __version__
    assert cli("--version").out.split()[1] == __version__
    root = Path(__file__).resolve().parent.parent
    assert f'"tsadmin {__version__}"' in (root / "man" / "tsadmin.1").read_text()
    assert f"\n## {__version__} (" in (root / "CHANGELOG.md").read_text()
    assert cli("db", "create", "m").code == 0
    assert cli("backup", "create", "m", "--to", str(tmp_path / "s"), "--name", "a").code == 0
    manifest = json.loads((tmp_path / "s" / "a" / "manifest.json").read_text())
    assert manifest["tool_version"] == __version__


def test_demo_runs_end_to_end(cli, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("--format", "json", "demo", "--data-dir", str(data_dir / "demo"))
    assert result.code == 0, result.err
    report = result.json()
    assert report["ok"] is True
    steps = {s["step"]: s for s in report["steps"]}
    assert report["data_dir"] == str(data_dir / "demo")  # the global --data-dir, hoisted
    assert re.search(r"writer PID \d+ killed", steps["crash"]["result"]), steps["crash"]
    assert set(steps) == {
        "create",
        "ingest",
        "checkpoint",
        "crash",
        "recover",
        "verify",
        "serve",
        "checksum",
    }
    assert steps["crash"]["figures"]["acked_batches"] >= 40
    assert steps["serve"]["figures"]["rows_in_table"] == 101
