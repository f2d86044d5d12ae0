"""The native line-protocol parser against the pure-Python one.

Both must store the same rows and refuse the same lines with the same words, on
byte soups made of what line protocol is made of (escapes, quotes, line ends,
comments, bytes that are not UTF-8, numbers at and past their ranges, keys that
repeat), cut into batches of 1, 3 and 5,000 lines so escapes and strings fall on
the edges of the slices the parser is given; on huge lines; and on the corpus
(test_lineprotocol.py runs every case through both). The native parser releases the
GIL while it parses."""

from __future__ import annotations

import io
import itertools
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.arrowmods import pa, pc
from engine.db.database import Database
from engine.db.datadir import create_database
from engine.errors import EngineError
from engine.ingest import lpnative
from engine.ingest.lpfast import split_lines
from engine.ingest.pipeline import IngestOptions, IngestReport, ingest_lp
from engine.settings import Settings
from tests.conftest import CLEAN_ENV

needs_native = pytest.mark.skipif(
    lpnative.active() != "native", reason="the native parser was not built (no C compiler)"
)

PIECES = [
    b"cpu", b"m\xc3\xa9m", b",host=a", b",host=b", b",k\\,1=v\\ 2", b",t=x\\=y", b" ", b"  ",
    b"v=1", b"v=1.5", b"v=-2i", b"v=3u", b"v=t", b"v=FALSE", b'v="s"', b'v="a\\"b\\\\"',
    b'v="open', b'"', b",", b"=", b"\\", b"\n", b"\r\n", b"\r", b"#c\n", b"\xff", b"\xc3",
    b"\x00", b"\t", b" 1700000000000000000", b" -5", b" 99999999999999999999",
    b"v=9223372036854775807i", b"v=9223372036854775808i", b"v=-9223372036854775808i",
    b"v=18446744073709551616u", b"v=1e308", b"v=1e309", b"v=.5", b"v=1.", b"v=-", b"w=2",
    b",time=1", b"time=1", b",v=dup", b"ts=1i", b"\\ ", b"\\,", b"#",
]  # fmt: skip
# Lines each parser must take alike, whoever of them parses them.
NAMED = [
    rb"#cpu v=1 1", rb"  cpu v=1 2", rb"cpu  v=1  3  ",
    rb"cpu,a=1 v=1,v=2 4", rb"cpu,a=1,a=2 v=1 5", rb"cpu,a=1 a=1 6", rb"cpu,time=1 v=1 7",
    rb"cpu time=1 8",
    rb"c\,p\ u\=,k\,\ \==v\,\ \= f\,\ \==1 9",
    rb"cpu v=1\ 10", rb"cpu,k=v\ v=1 11", rb'cpu s="a\\"b" 12', rb'cpu s="a\\\"b" 13',
    rb"cpu v=-9223372036854775808i,u=18446744073709551615u,w=-5i 14", rb"cpu v=1e-400,w=-0 15",
    rb"cpu v=+1 16", rb"cpu v=1_0 17", rb"cpu v=0x10 18", rb"cpu v=inf 19", rb"cpu v=nan 20",
    rb"cpu v=1 -9223372036854775808", rb"cpu v=1 -0", rb"cpu v=1 1 2", rb"cpu v=1 1x",
    rb"cpu\ v=1 21", rb"cpu,k=\\ v=1 22", rb"cpu v=1,\ w=2 23", rb"cpu v=\\1 24", rb"=cpu v=1 25",
    rb"cpu\\,k=v v=1 26", rb"cpu,k\\=v=1 v=1 27", rb"cpu v=1.5e+3,w=.5E-2,x=7. 28",
]  # fmt: skip

_numbers = itertools.count()
soups = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)


def ingest_with(
    parser: str, tmp_path: Path, data: bytes, batch_rows: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[IngestReport | str, dict[str, list[dict[str, Any]]]]:
    """``data`` ingested by ``parser``: the report (or the error) and every table's rows."""
    name = f"d{next(_numbers)}"
    db_dir = create_database(tmp_path, name, Settings.build(wal_level="off"))
    db = Database.open(db_dir, name)
    with monkeypatch.context() as patch:
        if parser == "python":
            patch.setattr(lpnative, "_NATIVE", None)
        options = IngestOptions(on_error="skip", batch_rows=batch_rows, default_time=10**18)
        try:
            report: IngestReport | str = ingest_lp(db, io.BytesIO(data), "f", options)
        except EngineError as exc:
            report = str(exc)
    stored = {table: plain_rows(db.scan(table)) for table in db.tables()}
    db.close()
    return report, stored


def plain_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows with times as integers (nanoseconds before 1970 or past 2262 have no datetime)."""
    columns = [
        column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column
        for column in table.columns
    ]
    return pa.table(columns, names=table.column_names).to_pylist()


def comparable(report: IngestReport | str) -> Any:
    if isinstance(report, str):
        return report
    return (report.rows, report.overwritten, report.rejected, report.rejected_reasons)


@needs_native
@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(soups, st.sampled_from([1, 3, 5000]))
def test_native_and_python_store_the_same_rows_and_refuse_the_same_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes, batch_rows: int
) -> None:
    native = ingest_with("native", tmp_path, data, batch_rows, monkeypatch)
    python = ingest_with("python", tmp_path, data, batch_rows, monkeypatch)
    assert native[1] == python[1]
    assert comparable(native[0]) == comparable(python[0])


@needs_native
@pytest.mark.parametrize("batch_rows", [1, 5000])
def test_named_lines_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_rows: int
) -> None:
    # a measurement each, so no line's field kinds clash with another's
    data = b"".join(line.replace(b"cpu", b"cpu%d" % i, 1) + b"\n" for i, line in enumerate(NAMED))
    native = ingest_with("native", tmp_path, data, batch_rows, monkeypatch)
    python = ingest_with("python", tmp_path, data, batch_rows, monkeypatch)
    assert native[1] == python[1]
    assert comparable(native[0]) == comparable(python[0])


@needs_native
def test_huge_lines_and_many_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wide_tags = ",".join(f"t{i}=v{i}" for i in range(64))
    too_many = ",".join(f"t{i}=v{i}" for i in range(65))
    data = (
        f"big,h={'x' * 300_000} v=1 1\n"
        f'big s="{"é" * 200_000}" 2\n'
        f"wide,{wide_tags} v=1 3\n"
        f"wide,{too_many} v=2 4\n"
        f"wide {','.join(f'f{i}={i}i' for i in range(200))} 5\n"
    ).encode()
    for batch_rows in (1, 5000):
        native = ingest_with("native", tmp_path, data, batch_rows, monkeypatch)
        python = ingest_with("python", tmp_path, data, batch_rows, monkeypatch)
        assert native[1] == python[1]
        assert comparable(native[0]) == comparable(python[0])
        assert sum(map(len, native[1].values())) == 5


@needs_native
def test_slices_of_one_array_parse_as_the_whole() -> None:
    """The parser reads a slice of an array's buffers (its offset is not 0)."""
    data = b"".join(b"cpu,host=h%d v=%di %d\n" % (i % 7, i, i) for i in range(1000))
    lines = split_lines(data)
    whole, _ = lpnative.parse(lines, 1, scale=1, divisor=1, default_ts=0, line="n")
    pieces = [
        lpnative.parse(lines.slice(at, 250), 1 + at, scale=1, divisor=1, default_ts=0, line="n")
        for at in range(0, 1000, 250)
    ]
    assert sum(s.rows.num_rows for s in whole) == 1000
    rows = sorted((r for piece, _ in pieces for s in piece for r in s.rows.to_pylist()), key=repr)
    assert rows == sorted((r for s in whole for r in s.rows.to_pylist()), key=repr)


@needs_native
def test_the_parser_lets_other_threads_run_while_it_parses() -> None:
    """A thread keeps counting while a big block parses: the parse holds no GIL."""
    block = b"".join(
        b"cpu,host=h%d,dc=eu v=%d.5,n=%di %d\n" % (i % 50, i, i, i) for i in range(20_000)
    )
    lines = split_lines(block * 20)
    ticks: list[float] = []
    done = threading.Event()

    def count() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())

    counter = threading.Thread(target=count)
    counter.start()
    try:
        started = time.perf_counter()
        lpnative.parse(lines, 1, scale=1, divisor=1, default_ts=0, line="n")
        ended = time.perf_counter()
    finally:
        done.set()
        counter.join()
    # a thread switch right before the parse can give the counter one interval; past that
    # it runs only if the parse let go of the GIL
    margin = 4 * sys.getswitchinterval()
    assert ended - started > 3 * margin, "the block parsed too fast to tell: make it bigger"
    assert any(started + margin < tick < ended - margin for tick in ticks)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler on this machine")
def test_where_a_compiler_is_the_native_parser_is_built_and_named() -> None:
    def version(**env: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "tsadmin", "--version"],
            env={**CLEAN_ENV, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    assert "native line-protocol parser" in version()
    assert "python line-protocol parser" in version(TSADMIN_LP_PARSER="python")


@needs_native
@given(
    st.lists(st.sampled_from([b"a", b"\n", b"\xc3\xa9", b"", b"\r", b"\n\n", b" "]), max_size=30)
)
def test_the_native_split_gives_arrows_lines(pieces: list[bytes]) -> None:
    block = b"".join(pieces)
    whole = pa.Array.from_buffers(
        pa.string(),
        1,
        [None, pa.array([0, len(block)], pa.int32()).buffers()[1], pa.py_buffer(block)],
    )
    lines = pc.split_pattern(whole, "\n").flatten()
    if block.endswith(b"\n"):
        lines = lines.slice(0, len(lines) - 1)
    assert lpnative.split(block).to_pylist() == lines.to_pylist()
    assert lpnative.split(block).validate(full=True) is None
