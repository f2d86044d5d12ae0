"""Ingest details: a slow producer is committed as it goes; CSV times, quoting, compression."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
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
    # small epoch integers are seconds (auto reads the unit from the magnitude)
    assert [(r["ts"], r["host"], r["value"]) for r in cpu] == [
        (1_000_000_000, "a", 1.0),
        (3_000_000_000, "b", 3.0),
    ]
    shown = cli("--format", "json", "table", "show", "m", "mem").json()
    assert {c["column"]: c["type"] for c in shown["columns"]}[
        "value"
    ] == "float64"  # not inferred int64
    bad_name = tmp_path / "bad.csv"
    bad_name.write_text("ts,measurement,value\n1,,1\n2,dashed-ok,2\n")
    refused = cli("ingest", "csv", "m", str(bad_name), "--table-column", "measurement")
    assert refused.code == 6 and "bad.csv:2: no table name" in refused.err
    assert cli("ingest", "csv", "m", str(mixed), "--schema", "value:decimal").code == 2


def test_line_protocol_last_write_wins_across_shapes_and_paths(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Lines of one key in one batch arrive through different shapes (and the exact parser
    for the escaped one); the rows must still be applied in line order."""
    cli("db", "create", "o")
    lp = tmp_path / "order.lp"
    lp.write_text(
        "m,t=a v=1i,w=1i 5\n"
        "m,t=a w=2i 5\n"
        "m,t=a v=3i 5\n"
        "m,t=a\\ b v=9i 5\n"  # escaped: the exact parser's
        "m,t=a w=4i,v=5i 5\n"  # another field order: another shape
        "m,t=a v=6i 5\n"
    )
    done = cli("ingest", "lp", "o", str(lp))
    assert done.code == 0, done.err
    rows = cli("--format", "json", "select", "o", "m", "--epoch").json()
    assert [(r["t"], r["v"], r["w"]) for r in rows] == [("a", 6, 4), ("a b", 9, None)]


def test_a_multiline_string_across_a_block_boundary(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The reader cuts its input into 1 MiB blocks at newlines; a string field whose
    newlines straddle a cut must still arrive whole."""
    from engine.ingest.inputs import BLOCK_BYTES

    cli("db", "create", "s")
    filler = "cpu,host=p v=0i 0\n" * ((BLOCK_BYTES - 100) // 18)  # 18 bytes a line
    assert len(filler) == 18 * ((BLOCK_BYTES - 100) // 18)
    text = "x" * 30 + "\n"
    story = 'note,host=h s="' + text * 200 + '" 7\n'
    lp = tmp_path / "story.lp"
    lp.write_text(filler + story + "cpu,host=after v=1i 1\n")
    assert len(filler) < BLOCK_BYTES < len(filler + story)
    done = cli("--format", "json", "ingest", "lp", "s", str(lp))
    assert done.code == 0, done.err
    notes = cli("--format", "json", "select", "s", "note").json()
    assert [r["s"] for r in notes] == [text * 200]
    after = cli("--format", "json", "select", "s", "cpu", "--where", "host=after").json()
    assert len(after) == 1


def test_rejects_from_both_paths_in_line_order(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "r")
    lp = tmp_path / "mixed.lp"
    lp.write_text(
        "cpu,host=a v=1i 1\n"
        "cpu,host=a v=1x 2\n"
        'cpu,host=b v=2i,s="ok \\"q\\"" 3\n'
        "cpu,host=a v=99999999999999999999i 4\n"
        "cpu,host=c v=3i 5\n"
    )
    rejects = tmp_path / "rejects.lp"
    done = cli(
        "--format",
        "json",
        "ingest",
        "lp",
        "r",
        str(lp),
        "--on-error",
        "skip",
        "--rejects",
        str(rejects),
    )
    assert done.code == 7, done.err
    assert done.json()["rows"] == 3 and done.json()["rejected"] == 2
    lines = rejects.read_text().splitlines()
    assert [line for line in lines if not line.startswith("#")] == [
        "cpu,host=a v=1x 2",
        "cpu,host=a v=99999999999999999999i 4",
    ]
    assert ":2:" in lines[0] and ":4:" in lines[2]
    aborted = cli("ingest", "lp", "r", str(lp))
    assert aborted.code == 6 and f"{lp}:2:" in aborted.err


def test_lines_with_keys_we_cannot_store_are_rejected_one_by_one(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A tag and a field with one key, a key `time` (InfluxDB 1.x refuses it), a key `ts`
    and a name outside this version's rule: each refused on its own line, never stored
    half (one of the two values of a tag and field pair silently lost) and never stopping
    the good lines under --on-error skip."""
    cli("db", "create", "k")
    source = tmp_path / "keys.lp"
    source.write_text(
        'cpu,host=a host="x" 1\n'
        "cpu,time=1 v=1 2\n"
        "cpu v=1,time=3 3\n"
        "cpu,host=b v=2 4\n"
        "dashed-name v=1 5\n"
        "cpu,ts=a v=1 6\n"
        "cpu,host=c v=3 7\n"
    )
    rejects = tmp_path / "rejects.lp"
    done = cli(
        "--format",
        "json",
        "ingest",
        "lp",
        "k",
        str(source),
        "--on-error",
        "skip",
        "--rejects",
        str(rejects),
    )
    assert done.code == 7, done.err
    assert done.json()["rows"] == 4 and done.json()["rejected"] == 3
    reasons = [x for x in rejects.read_text().splitlines() if x.startswith("# ")]
    assert [r.split(":")[1] for r in reasons] == ["1", "2", "3"]
    rows = cli("--format", "json", "select", "k", "cpu").json()
    # a tag key "ts" is kept, in the column "time" (our timestamp column is "ts")
    assert sorted((r["host"] or "", r["time"] or "") for r in rows) == [
        ("", "a"),
        ("b", ""),
        ("c", ""),
    ]
    assert cli("--format", "json", "select", "k", "dashed-name").json()[0]["v"] == 1.0
    stopped = cli("ingest", "lp", "k", str(source))
    assert stopped.code == 6 and ":1:" in stopped.err and "both a tag and a field" in stopped.err


def test_select_takes_epoch_times_with_a_unit(cli) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "e")
    lines = "".join(f"cpu v={i}i {1_732_400_000 + i}000000000\n" for i in range(10))
    assert cli("ingest", "lp", "e", "-", stdin=lines).code == 0
    for start, end in (("1732400003s", "1732400006s"), ("1732400003000ms", "1732400006000ms")):
        rows = cli("--format", "json", "select", "e", "cpu", "--start", start, "--end", end).json()
        assert [r["v"] for r in rows] == [3, 4, 5]


@pytest.mark.parametrize(
    ("values", "unit"),
    [
        ([1_732_400_000, 1_732_400_001], 1_000_000_000),
        ([1_732_400_000_000, 1_732_400_001_000], 1_000_000),
        ([1_732_400_000_000_000, 1_732_400_001_000_000], 1_000),
        ([1_732_400_000_000_000_000, 1_732_400_001_000_000_000], 1),
    ],
)
def test_csv_epoch_unit_from_magnitude(cli, tmp_path: Path, values: list[int], unit: int) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "u")
    source = tmp_path / "e.csv"
    source.write_text("ts,v\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values)))
    assert cli("ingest", "csv", "u", str(source), "--table", "t").code == 0
    rows = cli("--format", "json", "select", "u", "t", "--epoch").json()
    assert [r["ts"] for r in rows] == [v * unit for v in values]


def test_csv_delimiter_time_zone_and_batch_rows(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cli("db", "create", "g")
    source = tmp_path / "grafana.csv"
    source.write_text(
        "time;host;value\n"
        "2024-07-01 12:00:00;a;1.5\n"
        "2024-07-01 12:00:10;a;2.5\n"
        "2024-07-01 12:00:20;b;3.5\n"
    )
    done = cli(
        "--format",
        "json",
        "ingest",
        "csv",
        "g",
        str(source),
        "--table",
        "t",
        "--ts-column",
        "time",
        "--tags",
        "host",
        "--delimiter",
        ";",
        "--tz",
        "Europe/Zurich",
        "--batch-rows",
        "1",
    )
    assert done.code == 0, done.err
    assert done.json()["batches"] == 3  # one transaction per row, as asked
    rows = cli("--format", "json", "select", "g", "t").json()
    # 12:00 in Zurich (summer time, UTC+2) is 10:00 UTC
    assert rows[0]["ts"].startswith("2024-07-01T10:00:00") and rows[0]["value"] == 1.5
    bad = cli(
        "ingest",
        "csv",
        "g",
        str(source),
        "--table",
        "t",
        "--ts-column",
        "time",
        "--delimiter",
        ";",
        "--tz",
        "Mars/Olympus",
    )
    assert bad.code == 2 and "time zone" in bad.err and "--tz" in bad.err


def test_a_fast_pipe_is_read_in_whole_blocks(tmp_path: Path) -> None:
    """A pipe hands over at most 64 KiB a read; reading only what was there at that instant
    cut a fast producer's input into 64 KiB blocks, each paying the vectorised parser's
    fixed cost (a piped ingest ran at a third of a file's rate). Blocks must fill up."""
    from engine.ingest import inputs

    source = tmp_path / "input.lp"
    source.write_bytes(b"cpu,host=h v=1i 1\n" * (8 * 1024 * 1024 // 18))
    producer = subprocess.Popen(["cat", str(source)], stdout=subprocess.PIPE)
    assert producer.stdout is not None
    chunks = [c for c in inputs._chunks(producer.stdout, lambda: None) if c]
    producer.wait()
    assert sum(map(len, chunks)) == source.stat().st_size
    # 128 blocks of 64 KiB before; whole 1 MiB blocks now (a loaded machine may cut some)
    assert len(chunks) <= 64, [len(c) for c in chunks]
