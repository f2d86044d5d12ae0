"""Upserts keyed by (table, tag set, ts): InfluxDB's field-merge rule everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine import Batch, Database, SchemaConflict
from engine.storage.deletes import DeleteSpec
from engine.storage.merge import upsert_merge, upsert_merged
from engine.storage.rows import to_records
from engine.storage.schema import TableSchema
from tests.conftest import new_db


def write(db: Database, table: str, rows: list[dict[str, Any]], tags: list[str]) -> None:
    db.write([Batch(table, pa.Table.from_pylist(rows), tags)])


def records(db: Database, table: str) -> list[dict[str, Any]]:
    return to_records(db.scan(table), iso_time=False)


def test_later_point_overwrites_only_the_fields_it_carries(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "u"), "u", background=False)
    write(db, "cpu", [{"ts": 1, "host": "a", "user": 1.0, "sys": 2.0}], ["host"])
    write(db, "cpu", [{"ts": 1, "host": "a", "user": 5.0}], ["host"])
    assert records(db, "cpu") == [{"ts": 1, "host": "a", "user": 5.0, "sys": 2.0}]
    db.checkpoint()  # across a segment and the memtable
    write(db, "cpu", [{"ts": 1, "host": "a", "sys": 7.0}], ["host"])
    assert records(db, "cpu") == [{"ts": 1, "host": "a", "user": 5.0, "sys": 7.0}]
    db.checkpoint()  # across two segments
    assert records(db, "cpu") == [{"ts": 1, "host": "a", "user": 5.0, "sys": 7.0}]
    db.compact()
    assert records(db, "cpu") == [{"ts": 1, "host": "a", "user": 5.0, "sys": 7.0}]
    db.close()


def test_tag_set_identifies_the_series(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "u"), "u", background=False)
    write(db, "cpu", [{"ts": 1, "host": "a", "v": 1.0}, {"ts": 1, "host": "b", "v": 2.0}], ["host"])
    write(db, "cpu", [{"ts": 1, "host": "a", "dc": "x", "v": 3.0}], ["host", "dc"])
    got = records(db, "cpu")
    assert len(got) == 3  # (a), (b) and (a, dc=x) are three series
    db.close()


def test_field_type_conflict_names_field_and_types(data_dir: Path) -> None:
    db = Database.open(new_db(data_dir, "u"), "u", background=False)
    write(db, "cpu", [{"ts": 1, "v": 1.0}], [])
    with pytest.raises(SchemaConflict, match=r"field 'v' is float64, the write has string"):
        write(db, "cpu", [{"ts": 2, "v": "x"}], [])
    assert records(db, "cpu") == [{"ts": 1, "v": 1.0}]
    db.close()


KEYS = st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 5))
POINT = st.tuples(
    KEYS, st.dictionaries(st.sampled_from(["f", "g", "h"]), st.integers(-9, 9), min_size=1)
)
UPKEEP = [st.just(("checkpoint", None)), st.just(("compact", None)), st.just(("reopen", None))]
STEP = st.one_of(st.lists(POINT, min_size=1, max_size=6).map(lambda b: ("write", b)), *UPKEEP)
MODEL_RUNS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def model_batch(table: str, points: list[Any]) -> Batch:
    """A batch of ``points`` ((host, ts), fields): the fields it does not carry are null."""
    rows = [
        {"ts": ts, "host": host, **{k: None for k in "fgh"}, **fields}
        for (host, ts), fields in points
    ]
    return Batch(table, pa.Table.from_pylist(rows, schema=_schema()), ["host"])


def upkeep(db: Database, db_dir: Path, kind: str) -> Database:
    """A checkpoint, a compaction or a reopen (after a crash) of ``db``."""
    if kind == "checkpoint":
        db.checkpoint()
    elif kind == "compact":
        db.compact()
    else:
        db.abandon()
        db = Database.open(db_dir, "m", background=False)
    return db


@MODEL_RUNS
@given(steps=st.lists(STEP, min_size=1, max_size=12))
def test_matches_a_dict_model(tmp_path_factory: pytest.TempPathFactory, steps: list[Any]) -> None:
    data_dir = tmp_path_factory.mktemp("model")
    db_dir = new_db(data_dir, "m")
    db = Database.open(db_dir, "m", background=False)
    model: dict[tuple[str, int], dict[str, int]] = {}
    for kind, batch in steps:
        if kind == "write":
            db.write([model_batch("t", batch)])
            for (host, ts), fields in batch:
                model.setdefault((host, ts), {}).update(fields)
        else:
            db = upkeep(db, db_dir, kind)
    got = {
        (r["host"], r["ts"]): {k: r[k] for k in "fgh" if r.get(k) is not None}
        for r in (records(db, "t") if "t" in db.tables() else [])
    }
    db.close()
    assert got == model


def _schema() -> pa.Schema:
    return pa.schema([("ts", pa.int64()), ("host", pa.string())] + [(k, pa.int64()) for k in "fgh"])


TXN = st.lists(
    st.tuples(st.sampled_from(["t", "u"]), st.lists(POINT, min_size=1, max_size=6)),
    min_size=1,
    max_size=3,
)
DELETE = st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 5), st.integers(1, 6))
COUNTED_STEP = st.one_of(
    TXN.map(lambda t: ("write", t)), DELETE.map(lambda d: ("delete", d)), *UPKEEP
)


@MODEL_RUNS
@given(steps=st.lists(COUNTED_STEP, min_size=1, max_size=12))
@example(  # a delete not yet applied to the segment it empties: that key is new again
    steps=[
        ("write", [("t", [(("a", 1), {"f": 1})])]),
        ("checkpoint", None),
        ("delete", ("a", 0, 5)),
        ("write", [("t", [(("a", 1), {"g": 2})])]),
    ]
)
def test_overwritten_counts_match_the_model(
    tmp_path_factory: pytest.TempPathFactory, steps: list[Any]
) -> None:
    """Every commit's count of rows that overwrote a point, against a model, whatever
    mix of appends and rewrites, deletes, checkpoints and transactions of several batches
    (of one table too) comes before: the count that skips reading what the batch's time
    span does not meet gives the figure that reading everything would."""
    db_dir = new_db(tmp_path_factory.mktemp("counts"), "m")
    db = Database.open(db_dir, "m", background=False)
    model: dict[tuple[str, str, int], dict[str, int]] = {}
    for kind, step in steps:
        if kind == "write":
            expected = 0
            batches = []
            for table, points in step:
                batches.append(model_batch(table, points))
                for (host, ts), fields in points:
                    expected += (table, host, ts) in model
                    model.setdefault((table, host, ts), {}).update(fields)
            assert db.write(batches).overwritten == expected, step
        elif kind == "delete":
            host, start, end = step
            where = (("host", host),) if host is not None else ()
            db.log_delete(DeleteSpec("t", start, end, where))
            for key in [k for k in model if k[0] == "t" and start <= k[2] < end]:
                if host is None or key[1] == host:
                    del model[key]
        else:
            db = upkeep(db, db_dir, kind)
    got = {
        (table, r["host"], r["ts"]): {k: r[k] for k in "fgh" if r.get(k) is not None}
        for table in db.tables()
        for r in records(db, table)
    }
    db.close()
    assert got == model


key_row = st.tuples(
    st.sampled_from([None, "a", "b"]), st.integers(0, 9), st.none() | st.floats(0, 9)
)


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(st.lists(key_row, min_size=1, max_size=12), min_size=1, max_size=4),
    piece_rows=st.integers(1, 7),
)
def test_the_merge_in_pieces_is_the_merge_cut_in_pieces(
    batches: list[list[tuple[str | None, int, float | None]]], piece_rows: int
) -> None:
    # a checkpoint encodes the merge a piece at a time: the same rows, in the same order
    schema = TableSchema(["host"], {"v": "float64"})
    tables = [
        pa.table(
            {
                "ts": pa.array([t for _, t, _ in rows], pa.int64()),
                "host": pa.array([h for h, _, _ in rows], pa.string()),
                "v": pa.array([v for _, _, v in rows], pa.float64()),
            }
        )
        for rows in batches
    ]
    whole = upsert_merge(tables, schema, "ns")
    pieces = list(upsert_merged(tables, schema, "ns", piece_rows))
    assert all(0 < piece.num_rows <= piece_rows for piece in pieces)
    assert pa.concat_tables(pieces).equals(whole)
