"""The line-protocol corpus through storage, not just the parser: every case InfluxData
says decodes is ingested into a database and read back, and what is stored must be the
corpus's points (after upserts: a later point of the same key overwrites the fields it
carries). Driven through the engine's API (a process per case would take minutes)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from engine.db.database import Database
from engine.db.datadir import create_database
from engine.errors import BadInput
from engine.ingest.pipeline import IngestOptions, ingest_lp
from engine.names import key_of_column
from engine.settings import Settings
from tests.lpcorpus import CORPUS_PRECISION, decode_cases, expected_points, text_of

_KIND = {"float64": "float", "int64": "int", "uint64": "uint", "bool": "bool", "string": "string"}
CASES = [c for c in decode_cases() if c["output"].get("result") and not c["output"].get("error")]


def _keyed(points: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Points by key (measurement, tags, time), later fields overwriting earlier ones."""
    stored: dict[tuple[Any, ...], dict[str, Any]] = {}
    for point in points:
        key = (point["name"], frozenset(point["tags"].items()), point["time"])
        stored.setdefault(key, {}).update(point["fields"])
    return stored


def _stored(db: Database) -> dict[tuple[Any, ...], dict[str, Any]]:
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for table in db.tables():
        schema = db.schema(table)
        rows = db.scan(table)
        stamps = rows.column("ts").cast("int64").to_pylist()
        for i, stamp in enumerate(stamps):
            tags = {t: rows.column(t)[i].as_py() for t in schema.tags}
            fields = {
                key_of_column(f): (_KIND[k], _value(rows.column(f)[i].as_py()))
                for f, k in schema.fields.items()
                if rows.column(f)[i].is_valid
            }
            key = (table, frozenset((k, v) for k, v in tags.items() if v is not None), stamp)
            out[key] = fields
    return out


def _value(value: Any) -> Any:
    return "NaN" if isinstance(value, float) and value != value else value


def test_cases_exist() -> None:
    assert len(CASES) > 50


@pytest.mark.parametrize("case", CASES, ids=lambda c: str(c["input"]["text"])[:40])
def test_corpus_case_is_stored_as_decoded(
    case: dict[str, Any], tmp_path: Path, lp_parser: str
) -> None:
    db_dir = create_database(tmp_path, "c", Settings.build(precision="ns", wal_level="off"))
    db = Database.open(db_dir, "c")
    try:
        precision = CORPUS_PRECISION[case["input"]["precision"]]
        options = IngestOptions(
            precision=precision, on_error="abort", default_time=case["input"]["defaultTime"]
        )
        raw = text_of(case["input"]["text"])
        expected = expected_points(case)
        if any("time" in p["tags"] or "time" in p["fields"] for p in expected):
            # the parser takes it; InfluxDB 1.x refuses to store a key "time", and so do we
            with pytest.raises(BadInput, match="key 'time'"):
                ingest_lp(db, io.BytesIO(raw), "corpus", options)
            return
        ingest_lp(db, io.BytesIO(raw), "corpus", options)
        assert _stored(db) == _keyed(expected)
    finally:
        db.close()
