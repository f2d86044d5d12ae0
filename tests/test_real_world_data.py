"""Real-world data in, nothing lost: names as agents write them, CSV as exporters write
it, every per-row problem skipped alone, and reports that say what was new and what
overwrote. Everything through the real CLI; archives read back by pyarrow and DuckDB."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from tests.conftest import run_cli

T0 = 1_732_400_000_000_000_000

# As Telegraf, statsd, OpenTelemetry, Docker and Kubernetes write them.
TELEGRAF = [
    f"api.request.latency,k8s.pod.name=web-1,container-name=nginx 90_percentile=12.5 {T0}",
    f"docker_container_cpu,container-name=db,io.kubernetes.pod=x usage-percent=3.5 {T0}",
    f"disk\\ io,host=Zürich,path=/var\\,log read_bytes=5i {T0}",
    f"Zürich.temp,sensor=außen °C=-1.5 {T0}",
    f"cpu,host=a ts=7i,value=1 {T0}",
    f"CPU,host=a value=2 {T0}",
    f"Cpu,host=a value=3 {T0}",
    f"net\\,if,if\\=name=eth0 rx\\ bytes=10i {T0}",
    f"2xx_responses,status\\ code=200 count=4i {T0}",
    f"мера,ключ=значение поле=1 {T0}",
    f"{'Ü' * 300},k=v f=1 {T0}",  # a directory name too long to escape: it ends in a digest
]
TABLES = {
    "api.request.latency": {"k8s.pod.name": "web-1", "container-name": "nginx"},
    "docker_container_cpu": {"container-name": "db", "io.kubernetes.pod": "x"},
    "disk io": {"host": "Zürich", "path": "/var,log"},
    "Zürich.temp": {"sensor": "außen"},
    "cpu": {"host": "a"},
    "CPU": {"host": "a"},
    "Cpu": {"host": "a"},
    "net,if": {"if=name": "eth0"},
    "2xx_responses": {"status code": "200"},
    "мера": {"ключ": "значение"},
    "Ü" * 300: {"k": "v"},
}


def _load(data_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "telegraf.lp"
    source.write_text("\n".join(TELEGRAF) + "\n")
    assert run_cli(data_dir, "db", "create", "k8s-metrics.prod").code == 0
    done = run_cli(data_dir, "--format", "json", "ingest", "lp", "k8s-metrics.prod", str(source))
    assert done.code == 0, done.err
    assert done.json()["rows"] == len(TELEGRAF) and done.json()["rejected"] == 0


def test_agent_names_load_completely_and_read_back_everywhere(
    data_dir: Path, tmp_path: Path
) -> None:
    _load(data_dir, tmp_path)
    db = "k8s-metrics.prod"
    listed = run_cli(data_dir, "--format", "json", "table", "list", db).json()
    assert sorted(t["table"] for t in listed) == sorted(TABLES)
    for table, tags in TABLES.items():
        rows = run_cli(data_dir, "--format", "json", "select", db, table).json()
        assert len(rows) == 1, table
        assert {k: rows[0][k] for k in tags} == tags
        shown = run_cli(data_dir, "--format", "json", "table", "show", db, table).json()
        assert shown["table"] == table
        assert {c["column"] for c in shown["columns"] if c["kind"] == "tag"} == set(tags)
    # a user's field "ts" lives in the column "time"; the timestamp stays "ts"
    cpu = run_cli(data_dir, "--format", "json", "select", db, "cpu", "--epoch").json()
    assert cpu == [{"ts": T0, "host": "a", "time": 7, "value": 1.0}]
    shown = run_cli(data_dir, "--format", "json", "table", "show", db, "cpu").json()
    assert {"column": "time", "kind": "field", "type": "int64", "key": "ts"} in shown["columns"]
    # the three spellings of cpu are three tables, in directories that differ also when
    # case is folded (macOS, Windows)
    directories = [p.name for p in (data_dir / db / "tables").iterdir()]
    assert len({d.lower() for d in directories}) == len(TABLES)
    assert all(d.isascii() for d in directories)
    sums = run_cli(data_dir, "--format", "json", "db", "checksum", db).json()
    assert sorted(t["table"] for t in sums["tables"]) == sorted(TABLES)


def test_archives_keep_the_names_for_pyarrow_and_duckdb(data_dir: Path, tmp_path: Path) -> None:
    _load(data_dir, tmp_path)
    db = "k8s-metrics.prod"
    before = run_cli(data_dir, "--format", "json", "db", "checksum", db).json()
    made = run_cli(
        data_dir, "--format", "json", "backup", "create", db, "--to", str(tmp_path / "b")
    )
    assert made.code == 0, made.err
    archive = Path(made.json()["archive"])
    manifest = json.loads((archive / "manifest.json").read_text())
    for table, entry in manifest["tables"].items():
        files = [str(archive / f["path"]) for f in entry["files"]]
        names = pq.read_schema(files[0]).names  # an independent reader
        assert set(TABLES[table]) <= set(names), (table, names)
        seen = duckdb.connect().execute(f"SELECT * FROM read_parquet({files})").description
        assert [column[0] for column in seen] == names
    restored = run_cli(data_dir, "restore", str(archive), "--db", "copy")
    assert restored.code == 0, restored.err
    after = run_cli(data_dir, "--format", "json", "db", "checksum", "copy").json()
    assert after["tables"] == before["tables"]


def test_overwrites_are_counted_apart_from_new_rows(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "u").code == 0
    first = tmp_path / "first.lp"
    # two lines repeat the key of an earlier line of the same file
    first.write_text(
        f"cpu,host=a v=1 {T0}\ncpu,host=b v=1 {T0}\ncpu,host=a v=2 {T0}\n"
        f"cpu v=1 {T0}\ncpu v=5 {T0}\n"
    )
    done = run_cli(data_dir, "--format", "json", "ingest", "lp", "u", str(first)).json()
    assert (done["read"], done["rows"], done["new"], done["overwritten"]) == (5, 5, 3, 2)
    again = run_cli(data_dir, "ingest", "lp", "u", str(first))
    assert again.code == 0 and "(0 new, 5 overwrote existing points)" in again.err
    assert run_cli(data_dir, "checkpoint", "u").code == 0  # now the points are in segments
    later = tmp_path / "later.lp"
    later.write_text(f"cpu,host=a v=3 {T0}\ncpu,host=c v=3 {T0}\n")
    done = run_cli(data_dir, "--format", "json", "ingest", "lp", "u", str(later)).json()
    assert (done["new"], done["overwritten"]) == (1, 1)


def test_csv_bad_rows_are_rejected_one_by_one(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "c", "--precision", "ms").code == 0
    source = tmp_path / "rows.csv"
    source.write_bytes(
        b"time,site,level,ok\n"
        b"2024-11-24T00:00:00Z,a,1.5,true\n"  # 2 good
        b"2024-11-24T00:00:01Z,b,1.5\n"  # 3 one column short
        b"2024-11-24T00:00:02Z,c,high,true\n"  # 4 not a float
        b",d,1.5,true\n"  # 5 no timestamp
        b"yesterday,e,1.5,true\n"  # 6 unreadable timestamp
        b"2024-11-24T00:00:03.000000001Z,f,1.5,true\n"  # 7 finer than ms
        b"2024-11-24T00:00:04Z,\xff\xfe,1.5,true\n"  # 8 not UTF-8
        b"2024-11-24T00:00:05Z,g,2.5,maybe\n"  # 9 not a bool
        b"2024-11-24T00:00:06Z,h,3.5,false,extra\n"  # 10 one column too many
        b"2024-11-24 00:00:07,i,4.5,FALSE\n"  # 11 good, naive: in --tz
        b"2024-11-24T00:00:08Z,\xff\n"  # 12 too short and not UTF-8
    )
    rejects = tmp_path / "rejects.txt"
    done = run_cli(
        data_dir, "--format", "json", "ingest", "csv", "c", str(source), "--table", "water",
        "--tags", "site", "--schema", "level:float64,ok:bool", "--tz", "Europe/Zurich",
        "--on-error", "skip", "--rejects", str(rejects), "--batch-rows", "2",
    )  # fmt: skip
    assert done.code == 7, done.err
    assert (done.json()["rows"], done.json()["rejected"]) == (2, 9)
    kept = rejects.read_bytes()
    assert b"\n2024-11-24T00:00:08Z,\xff\n" in kept  # as it came, byte for byte
    reasons = [line for line in kept.decode(errors="replace").splitlines() if line.startswith("# ")]
    assert [r.split(":")[1] for r in reasons] == [*(str(n) for n in range(3, 11)), "12"]
    assert "3 columns, the header has 4" in reasons[0] and "5 columns" in reasons[7]
    assert "not float64" in reasons[1] and "no timestamp" in reasons[2]
    assert "finer than" in reasons[4] and "UTF-8" in reasons[5] and "not bool" in reasons[6]
    rows = run_cli(data_dir, "--format", "json", "select", "c", "water").json()
    assert [(r["ts"], r["site"], r["level"], r["ok"]) for r in rows] == [
        ("2024-11-24T00:00:00.000Z", "a", 1.5, True),
        ("2024-11-23T23:00:07.000Z", "i", 4.5, False),  # 00:00:07 in Zurich (UTC+1)
    ]
    stopped = run_cli(data_dir, "ingest", "csv", "c", str(source), "--table", "water2")
    assert stopped.code == 6 and "rows.csv:3:" in stopped.err and "committed" in stopped.err


def test_csv_as_exporters_write_it(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "x").code == 0
    pandas = tmp_path / "pandas.csv"
    pandas.write_text(",ts,v\n0,1732400000,1\n")
    refused = run_cli(data_dir, "ingest", "csv", "x", str(pandas))
    assert refused.code == 6 and "no name" in refused.err and "index=False" in refused.err
    twice = tmp_path / "twice.csv"
    twice.write_text("ts,v,v\n1732400000,1,2\n")
    refused = run_cli(data_dir, "ingest", "csv", "x", str(twice))
    assert refused.code == 6 and "appears twice" in refused.err
    grafana = tmp_path / "grafana.csv"
    grafana.write_text('"Time";"host";"value"\n"2024-11-24 00:00:00.123456789";"a";"1,5"\n')
    loaded = run_cli(
        data_dir, "ingest", "csv", "x", str(grafana), "--ts-column", "Time", "--delimiter", ";",
        "--tags", "host", "--schema", "value:string",
    )  # fmt: skip
    assert loaded.code == 0, loaded.err
    rows = run_cli(data_dir, "--format", "json", "select", "x", "grafana").json()
    assert rows[0]["ts"] == "2024-11-24T00:00:00.123456789Z"  # nanoseconds kept


ANNOTATED = """\
#group,false,false,true,true,false,false,true,true,true
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string
#default,_result,,,,,,,,
,result,table,_start,_stop,_time,_value,_field,_measurement,host
,,0,2024-11-24T00:00:00Z,2024-11-24T01:00:00Z,2024-11-24T00:00:10.5Z,1.5,usage,cpu.total,a
,,0,2024-11-24T00:00:00Z,2024-11-24T01:00:00Z,2024-11-24T00:00:20Z,oops,usage,cpu.total,a

#group,false,false,true,true,false,false,true,true,true
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,long,string,string,string
#default,_result,,,,,,,,
,result,table,_start,_stop,_time,_value,_field,_measurement,host
,,1,2024-11-24T00:00:00Z,2024-11-24T01:00:00Z,2024-11-24T00:00:10.5Z,7,count,cpu.total,a
"""


def test_influxdb2_annotated_csv(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "a").code == 0
    source = tmp_path / "export.csv.gz"
    source.write_bytes(gzip.compress(ANNOTATED.encode()))
    done = run_cli(
        data_dir, "--format", "json", "ingest", "csv", "a", str(source), "--on-error", "skip"
    )
    assert done.code == 7, done.err
    assert (done.json()["rows"], done.json()["rejected"], done.json()["overwritten"]) == (2, 1, 1)
    rows = run_cli(data_dir, "--format", "json", "select", "a", "cpu.total").json()
    assert rows == [{"ts": "2024-11-24T00:00:10.500000000Z", "host": "a", "count": 7, "usage": 1.5}]


def test_line_protocol_skip_never_aborts(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "s").code == 0
    source = tmp_path / "mixed.lp"
    source.write_bytes(
        f"cpu,host=a v=1 {T0}\n".encode()
        + b"cpu,host=\xff v=2 1\n"  # not UTF-8
        + f"cpu,host=b v=3i {T0}\n".encode()  # type conflict with line 1
        + b"cpu,host=c v=4 99999999999999999999\n"  # out of range
        + f'cpu host="x" {T0 + 1}\n'.encode()  # host is a tag of cpu
        + f"cpu,host=d v=5 {T0}\n".encode()
    )
    rejects = tmp_path / "rejects.lp"
    done = run_cli(
        data_dir, "--format", "json", "ingest", "lp", "s", str(source), "--on-error", "skip",
        "--rejects", str(rejects),
    )  # fmt: skip
    assert done.code == 7, done.err
    assert (done.json()["rows"], done.json()["rejected"]) == (2, 4)
    kept = rejects.read_bytes()
    assert b"cpu,host=\xff v=2 1\n" in kept  # the bad line as it came, byte for byte
    reasons = [x for x in kept.decode(errors="replace").splitlines() if x.startswith("# ")]
    assert [r.split(":")[1] for r in reasons] == ["2", "3", "4", "5"]
    stopped = run_cli(data_dir, "ingest", "lp", "s", str(source))
    assert stopped.code == 6 and "mixed.lp:2" in stopped.err


def test_an_unwritable_rejects_file_stops_before_reading(data_dir: Path, tmp_path: Path) -> None:
    assert run_cli(data_dir, "db", "create", "r").code == 0
    source = tmp_path / "ok.lp"
    source.write_text(f"cpu v=1 {T0}\n")
    for rejects in (tmp_path / "missing" / "r.txt", tmp_path):
        done = run_cli(
            data_dir, "ingest", "lp", "r", str(source), "--on-error", "skip", "--rejects",
            str(rejects),
        )  # fmt: skip
        assert done.code in (1, 2) and "rejects file" in done.err and "Traceback" not in done.err
    assert run_cli(data_dir, "--format", "json", "table", "list", "r").json() == []


def test_csv_rejects_keep_their_row_numbers_across_blocks_read_ahead(
    data_dir: Path, tmp_path: Path
) -> None:
    """Blocks are read on another thread while the one before is committed: the rows the
    reader leaves out (a column short or too many) and the rows refused after it (a
    value that is not a float) must still be numbered and rejected in file order, in
    every block of a file of several (the reader reads 1 MiB at a time)."""
    assert run_cli(data_dir, "db", "create", "b").code == 0
    lines, bad = [b"ts,host,v"], []
    for row in range(2, 130_002):  # ~2.2 MB: three blocks
        if row % 9_973 == 0:
            lines.append(b"%d,h%d" % (row, row % 7))  # a column short: left out
            bad.append(row)
        elif row % 10_007 == 0:
            lines.append(b"%d,h%d,x%d" % (row, row % 7, row))  # not a float: refused
            bad.append(row)
        elif row % 30_011 == 0:
            lines.append(b"%d,h%d,1.0,extra" % (row, row % 7))  # too many: left out
            bad.append(row)
        else:
            lines.append(b"%d,h%d,%d.5" % (row, row % 7, row))
    source = tmp_path / "big.csv"
    source.write_bytes(b"\n".join(lines) + b"\n")
    assert source.stat().st_size > 2 << 20
    rejects = tmp_path / "rejects.txt"
    done = run_cli(
        data_dir, "--format", "json", "ingest", "csv", "b", str(source), "--table", "m",
        "--tags", "host", "--schema", "v:float64", "--on-error", "skip",
        "--rejects", str(rejects),
    )  # fmt: skip
    assert done.code == 7, done.err
    assert (done.json()["rows"], done.json()["rejected"]) == (130_000 - len(bad), len(bad))
    reasons = [line for line in rejects.read_text().splitlines() if line.startswith("# ")]
    assert [int(r.split(":")[1]) for r in reasons] == bad
    stored = run_cli(data_dir, "--format", "json", "db", "stats", "b").json()
    assert stored["segment_rows"] + stored["wal_rows"] == 130_000 - len(bad)
    # a row longer than a block, in the third block: the reader fails there, the blocks
    # before it stay committed, and the error says where, whichever thread read it
    broken = tmp_path / "broken.csv"
    huge = b"5,h1," + b"9" * (3 << 20)
    broken.write_bytes(b"\n".join([*lines[:100_000], huge, *lines[100_000:]]) + b"\n")
    failed = run_cli(
        data_dir, "--format", "json", "ingest", "csv", "b", str(broken), "--table", "n",
        "--tags", "host", "--schema", "v:float64", "--on-error", "skip",
    )  # fmt: skip
    assert failed.code == 6, failed.err
    assert "Traceback" not in failed.err and "broken.csv: after row" in failed.err, failed.err
    after_row = int(failed.err.split("after row ")[1].split(":")[0])
    assert after_row == 100_000  # the last row before the one that failed
    kept = run_cli(data_dir, "--format", "json", "select", "b", "n", "--limit", "200000").json()
    assert 50_000 < len(kept) < after_row
