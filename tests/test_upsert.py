"""Upserts keyed by (table, tag set, ts): InfluxDB's field-merge rule everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Batch, Database, SchemaConflict
from engine.storage.rows import to_records
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
STEP = st.one_of(
    st.lists(POINT, min_size=1, max_size=6).map(lambda b: ("write", b)),
    st.just(("checkpoint", None)),
    st.just(("compact", None)),
    st.just(("reopen", None)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(STEP, min_size=1, max_size=12))
def test_matches_a_dict_model(tmp_path_factory: pytest.TempPathFactory, steps: list[Any]) -> None:
    data_dir = tmp_path_factory.mktemp("model")
    db_dir = new_db(data_dir, "m")
    db = Database.open(db_dir, "m", background=False)
    model: dict[tuple[str, int], dict[str, int]] = {}
    for kind, batch in steps:
        if kind == "write":
            rows = [
                {"ts": ts, "host": host, **{k: None for k in "fgh"}, **fields}
                for (host, ts), fields in batch
            ]
            db.write([Batch("t", pa.Table.from_pylist(rows, schema=_schema()), ["host"])])
            for (host, ts), fields in batch:
                model.setdefault((host, ts), {}).update(fields)
        elif kind == "checkpoint":
            db.checkpoint()
        elif kind == "compact":
            db.compact()
        else:
            db.abandon()
            db = Database.open(db_dir, "m", background=False)
    got = {
        (r["host"], r["ts"]): {k: r[k] for k in "fgh" if r.get(k) is not None}
        for r in (records(db, "t") if "t" in db.tables() else [])
    }
    db.close()
    assert got == model


def _schema() -> pa.Schema:
    return pa.schema([("ts", pa.int64()), ("host", pa.string())] + [(k, pa.int64()) for k in "fgh"])
