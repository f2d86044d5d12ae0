"""The write endpoint's batcher, driven through the engine API: requests committed as
one group end exactly as if each had been committed alone (same lines refused, with
the same numbers and reasons; the same rows stored), whatever the bodies hold: bad
lines, type conflicts between requests, strings spanning lines, a string left open
at the end of a body."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Database, Settings, create_database
from engine.server.batcher import Batcher, WriteResult

LINES = [
    "m,host=a v=1 1",
    "m,host=b v=2.5 2",
    "m,host=a v=3 3",
    'm,host=a note="two words" 4',
    'm,host=c note="left open',
    'closed" 5',
    'm v="a string now" 6',
    "m v=7i 7",
    "m v= 8",
    "m,host v=9 9",
    "# a comment",
    "",
    "other,k=x n=1i 10",
    "other,k=x n=2.0 11",
]

body = st.lists(st.sampled_from(LINES), min_size=0, max_size=6).map(
    lambda lines: "\n".join(lines).encode()
)


def _outcome(results: list[WriteResult]) -> list[list[tuple[int, str]]]:
    return [[(r.line, r.reason) for r in result.refused] for result in results]


def _stored(db: Database) -> dict[str, list[dict[str, object]]]:
    return {table: _plain(db.scan(table)).to_pylist() for table in db.tables()}


def _plain(rows: pa.Table) -> pa.Table:
    """``ts`` as integers (Python's datetime cannot hold nanoseconds)."""
    return rows.set_column(0, "ts", rows.column("ts").cast(pa.int64()))


def _run(directory: Path, name: str, bodies: list[bytes], *, grouped: bool) -> tuple[object, ...]:
    create_database(directory, name, Settings())
    db = Database.open(directory / name, name, background=False)
    batcher = Batcher(db, workers=0)
    futures = []
    for payload in bodies:
        futures.append(batcher.submit(payload, "ns"))
        if not grouped:
            batcher.commit_waiting()
    batcher.commit_waiting()
    results = [f.result(timeout=10) for f in futures]
    stored = _stored(db)
    db.close()
    return _outcome(results), stored


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies=st.lists(body, min_size=1, max_size=5))
def test_a_group_ends_as_its_requests_alone_would(bodies: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        together = _run(Path(tmp), "together", bodies, grouped=True)
        alone = _run(Path(tmp), "alone", bodies, grouped=False)
    assert together == alone


def test_a_string_left_open_does_not_swallow_the_next_request(tmp_path: Path) -> None:
    create_database(tmp_path, "m", Settings())
    db = Database.open(tmp_path / "m", "m", background=False)
    batcher = Batcher(db, workers=0)
    first = batcher.submit(b'm s="never closed\n', "ns")
    second = batcher.submit(b'm v=1 1\nm s="x" 2\n', "ns")
    batcher.commit_waiting()
    assert [r.line for r in first.result().refused] == [1]
    assert second.result().refused == []
    assert db.scan("m").num_rows == 2
    db.close()


def test_requests_of_a_group_are_numbered_within_their_own_bodies(tmp_path: Path) -> None:
    create_database(tmp_path, "m", Settings())
    db = Database.open(tmp_path / "m", "m", background=False)
    batcher = Batcher(db, workers=0)
    futures = [batcher.submit(b"m v=1 1\nm v= 2\nm v=3 3", "ns") for _ in range(3)]
    futures.append(batcher.submit(b"m v=4 4\n\nbad\n", "s"))
    batcher.commit_waiting()
    assert [[r.line for r in f.result().refused] for f in futures] == [[2], [2], [2], [3]]
    assert [r.where for r in futures[3].result().refused] == ["request:3:4"]
    assert _plain(db.scan("m")).column("ts").to_pylist() == [1, 3, 4 * 10**9]
    db.close()
