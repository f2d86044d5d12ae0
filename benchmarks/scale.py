"""Scale: every command's time and peak memory from 1M to 100M rows (issue 27).

For each size N (``--rows 1000000,10000000``; ``make bench-scale`` adds 100,000,000):

1. a fresh database (1-hour partitions, so every size has several: 3 at 1M rows,
   28 at 10M, 278 at 100M) is fed TSBS cpu-only rows (1,000 hosts, 10 tags, 10
   fields, benchmarks/tsbs.py) generated in chunks and piped into
   ``tsadmin ingest lp DB -``: no input file on disk;
2. then each command below runs as a new process, measured by wall time and by its
   own peak RSS (``os.wait4``'s rusage of that child alone): checkpoint, db list,
   db stats, db verify, db checksum, select of one host over one hour, of one host
   over the whole range, with --limit 10, and of every row as CSV (to /dev/null), a
   full backup, 200,000 more rows then an incremental backup (its cost per row is per
   row added: it should follow the change, not the database), a restore of that chain
   (local store), a delete of 1 % of the time range, the expiry of one partition.

A command that passes ``--max-rss-gb`` (default 12) is killed and reported so: the OOM
killer would do the same on a smaller machine, and this one must stay usable.

Reported per size and command: seconds, peak RSS (MB; the floor is this process's own
~25 MB, which Linux carries into a child's figure), microseconds per row; and for
the largest size against the smallest, per-row cost (goal <= 1.25: near-linear) and
peak RSS (goal <= 1.2: flat, and under 1 GB for every command). Writes
``benchmarks/results/scale.json`` and ``scale.md``.

Run: ``.venv/bin/python benchmarks/scale.py --rows 1000000,10000000``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The rows' shape (benchmarks/tsbs.py); this process imports no pyarrow: see measure()
HOSTS = 1000
START_NS = 1_700_000_000_000_000_000
STEP_NS = 10_000_000_000
RESULTS = Path(__file__).parent / "results"
TSADMIN = str(Path(sys.executable).with_name("tsadmin"))
CHUNK = 100_000
DB = "scale"
HOUR_NS = 3600 * 1_000_000_000


@dataclass
class Measured:
    command: str
    seconds: float
    peak_rss_mb: float
    exit: int  # the child's exit status; -9 when killed over the memory cap
    rows: int

    @property
    def us_per_row(self) -> float:
        return self.seconds / self.rows * 1e6 if self.rows else 0.0


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _watch(pid: int, cap_kb: int, killed: list[bool], reaped: threading.Event) -> None:
    """Kill the child ``pid`` once its resident memory passes the cap. It never waits
    for the child (that would reap it before ``os.wait4`` reads its rusage); a child
    that has exited but is not yet reaped shows no resident memory."""
    while not reaped.wait(0.1):
        if _rss_kb(pid) > cap_kb:
            killed.append(True)
            os.kill(pid, signal.SIGKILL)
            return


def measure(
    name: str, args: list[str], rows: int, cap_kb: int, rows_in: tuple[int, int] | None = None
) -> Measured:
    """Run ``tsadmin ARGS`` as a child; its wall time and its own peak RSS. With
    ``rows_in`` (first, count), a generator process pipes those rows into its stdin.

    Linux carries a process's peak RSS across fork and exec into the child's rusage, so
    this process stays small (no pyarrow here: the rows come from a generator child)
    and a child's figure is its own."""
    started = time.perf_counter()
    generator = None
    if rows_in is not None:
        generator = subprocess.Popen(
            [sys.executable, __file__, "--generate", *map(str, rows_in)], stdout=subprocess.PIPE
        )
    child = subprocess.Popen(
        [TSADMIN, *args],
        stdin=generator.stdout if generator else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    if generator is not None and generator.stdout is not None:
        generator.stdout.close()  # the child holds the pipe's reading end now
    killed: list[bool] = []
    reaped = threading.Event()
    watcher = threading.Thread(target=_watch, args=(child.pid, cap_kb, killed, reaped), daemon=True)
    watcher.start()
    err = child.stderr.read() if child.stderr else b""
    _, status, usage = os.wait4(child.pid, 0)
    reaped.set()
    watcher.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    code = -9 if killed else child.returncode
    if generator is not None:
        generator.wait()
    if code not in (0, -9):
        print(f"  {name}: exit {code}: {err.decode(errors='replace').strip()[-300:]}")
    return Measured(name, seconds, usage.ru_maxrss / 1024, code, rows)


def generate(start: int, rows: int) -> None:
    """Rows ``start..start+rows`` as line protocol on stdout, chunk by chunk: each line is
    built by Arrow kernels and the chunk written straight from the string array's data
    buffer, so the generator outruns the ingest it feeds (no Python string per line)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import pyarrow as pa
    import pyarrow.compute as pc
    from tsbs import FIELDS, TAGS, _percent, cpu_rows

    # a host's series key is the same on every line: built once, then taken per row
    hosts = cpu_rows(0, HOSTS)
    series_of_host = pc.binary_join_element_wise(
        "cpu", *[pc.binary_join_element_wise(f"{t}=", hosts.column(t), "") for t in TAGS], ","
    )

    def chunk_bytes(first: int, count: int) -> memoryview:
        index = pa.array(range(first, first + count), pa.int64())
        fields = [
            pc.binary_join_element_wise(f"{f}=", _percent(index, i).cast(pa.string()), "i", "")
            for i, f in enumerate(FIELDS)
        ]
        series = series_of_host.take(pc.remainder(index, HOSTS))
        values = pc.binary_join_element_wise(*fields, ",")
        ts = pc.add(pc.multiply(pc.divide(index, HOSTS), STEP_NS), START_NS)
        stamp = pc.binary_join_element_wise(ts.cast(pa.string()), "\n", "")
        lines = pc.binary_join_element_wise(series, values, stamp, " ")
        lines = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
        _, offsets, data = lines.buffers()  # int32 offsets: a chunk is well under 2 GB
        (first,) = struct.unpack_from("<i", offsets, 4 * lines.offset)
        (last,) = struct.unpack_from("<i", offsets, 4 * (lines.offset + len(lines)))
        return memoryview(data)[first:last]

    with contextlib.suppress(BrokenPipeError):  # the ingest died: its exit status says why
        for first in range(start, start + rows, CHUNK):
            sys.stdout.buffer.write(chunk_bytes(first, min(CHUNK, start + rows - first)))
        sys.stdout.buffer.flush()


def one_size(rows: int, work: Path, cap_kb: int) -> list[Measured]:
    data = work / f"data-{rows}"
    store = work / f"backups-{rows}"
    base = ["--data-dir", str(data)]
    subprocess.run(
        [TSADMIN, *base, "db", "create", DB, "--partition", "1h"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    steps = rows // HOSTS  # one point per host per step
    span_ns = steps * STEP_NS
    one_hour = (START_NS, START_NS + HOUR_NS)
    one_percent = (START_NS + span_ns // 2, START_NS + span_ns // 2 + span_ns // 100)
    more = 200_000  # the nightly change: the same at every size
    out: list[Measured] = []

    def run(
        name: str, *args: str, rows_in: tuple[int, int] | None = None, counted: int = rows
    ) -> None:
        result = measure(name, [*base, *args], counted, cap_kb, rows_in)
        out.append(result)
        print(
            f"  {name:<28} {result.seconds:8.2f} s {result.peak_rss_mb:8.0f} MB"
            f"{'  KILLED over the cap' if result.exit == -9 else ''}",
            flush=True,
        )

    run("ingest lp (piped)", "--quiet", "ingest", "lp", DB, "-", rows_in=(0, rows))
    run("checkpoint", "checkpoint", DB)
    run("db list", "db", "list")
    run("db stats", "db", "stats", DB)
    run("db verify", "db", "verify", DB)
    run("db checksum", "db", "checksum", DB)
    host = ["--where", "hostname=hostname_0"]
    run("select 1 host, 1 hour", "select", DB, "cpu", *host,
        "--start", str(one_hour[0]), "--end", str(one_hour[1]))  # fmt: skip
    run("select 1 host, all", "select", DB, "cpu", *host)
    run("select --limit 10", "select", DB, "cpu", "--limit", "10")
    run("select all as csv", "--format", "csv", "select", DB, "cpu")
    run("backup create (full)", "backup", "create", DB, "--to", str(store), "--name", "full")
    run("ingest +200k rows", "--quiet", "ingest", "lp", DB, "-", rows_in=(rows, more), counted=more)
    run("backup create --incremental", "backup", "create", DB, "--to", str(store),
        "--incremental", "--name", "incr", counted=more)  # fmt: skip
    run("restore (full + incr)", "restore", str(store / "incr"), "restored")
    run("delete 1 % of the range", "delete", DB, "cpu", "--start", str(one_percent[0]),
        "--end", str(one_percent[1]), "--yes")  # fmt: skip
    keep_hours = max(1, span_ns // HOUR_NS - 1)  # the oldest partition falls out
    run("expire one partition", "config", "set", DB, "retention", f"{keep_hours}h", "--yes")
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    return out


def ratios(small: list[Measured], large: list[Measured]) -> list[dict[str, Any]]:
    rows = []
    for a, b in zip(small, large, strict=True):
        ok = a.exit == 0 and b.exit == 0
        rows.append(
            {
                "command": a.command,
                "per_row_ratio": round(b.us_per_row / a.us_per_row, 2) if ok else None,
                "rss_ratio": round(b.peak_rss_mb / a.peak_rss_mb, 2) if ok else None,
                "peak_rss_mb_large": round(b.peak_rss_mb),
            }
        )
    return rows


def render(report: dict[str, Any]) -> str:
    sizes = report["sizes"]
    lines = [
        f"# Scale: time and peak memory by size ({report['date']}, {report['machine']})",
        "",
        "Per command: seconds, peak RSS of the command's own process (MB), microseconds "
        "per row. `KILLED` passed the memory cap "
        f"({report['max_rss_gb']} GB). Run: `{report['command']}`. The piped ingest "
        "reads from a generator process that alone makes "
        f"{report['generator_rows_per_s']:,} rows/s (to /dev/null): an ingest at about "
        "that rate is held back by its input.",
        "",
        "| command | " + " | ".join(f"{int(n):,} rows" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    names = [m["command"] for m in next(iter(sizes.values()))]
    for i, name in enumerate(names):
        cells = []
        for measured in sizes.values():
            m = measured[i]
            text = f"{m['seconds']:.2f} s, {m['peak_rss_mb']:.0f} MB, {m['us_per_row']:.2f} µs/row"
            if m["exit"] == -9:
                text = "KILLED at " + text
            elif m["exit"] != 0:
                text = f"FAILED (exit {m['exit']})"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if report.get("ratios"):
        small, large = report["ratio_sizes"]
        lines += [
            "",
            f"Largest against smallest ({large:,} / {small:,} rows): per-row cost "
            "(goal <= 1.25) and peak RSS (goal <= 1.2, and under 1 GB).",
            "",
            "| command | per-row cost ratio | peak RSS ratio | peak RSS at the largest |",
            "|---|---|---|---|",
        ]
        for r in report["ratios"]:
            lines.append(
                f"| {r['command']} | {r['per_row_ratio']} | {r['rss_ratio']} | "
                f"{r['peak_rss_mb_large']} MB |"
            )
    return "\n".join(lines) + "\n"


def write_results(out: Path, report: dict[str, Any], text: str) -> None:
    """``report`` as JSON at ``out`` and ``text`` (its table) beside it as Markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)


def run_header() -> dict[str, str]:
    """The date and the machine a result was measured on."""
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
    }


def main() -> None:
    if sys.argv[1:2] == ["--generate"]:
        generate(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--max-rss-gb", type=float, default=12.0)
    parser.add_argument("--work", type=Path, help="where the databases go (a disk)")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    args = parser.parse_args()
    sizes = [int(x) for x in args.rows.split(",")]
    cap_kb = int(args.max_rss_gb * 1024 * 1024)
    work = Path(tempfile.mkdtemp(prefix="tsadmin-scale-", dir=args.work))
    report: dict[str, Any] = {
        **run_header(),
        "command": "python benchmarks/scale.py --rows " + args.rows,
        "max_rss_gb": args.max_rss_gb,
        "sizes": {},
    }
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--generate", "0", str(min(sizes))],
        stdout=subprocess.DEVNULL,
        check=True,
    )
    report["generator_rows_per_s"] = round(min(sizes) / (time.perf_counter() - started))
    measured: dict[int, list[Measured]] = {}
    try:
        for rows in sizes:
            print(f"{rows:,} rows", flush=True)
            measured[rows] = one_size(rows, work, cap_kb)
            report["sizes"][str(rows)] = [
                {**asdict(m), "us_per_row": round(m.us_per_row, 3)} for m in measured[rows]
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if len(sizes) > 1:
        report["ratio_sizes"] = [min(sizes), max(sizes)]
        report["ratios"] = ratios(measured[min(sizes)], measured[max(sizes)])
    write_results(args.out, report, render(report))


if __name__ == "__main__":
    main()
