"""No input makes ingest fail with anything but its own clear error: byte soups made of
the pieces real files are made of (delimiters, quotes, line ends, names, numbers, times,
annotations, bytes that are not UTF-8), through line protocol, CSV and annotated CSV, in
both error policies; whatever is refused is an :class:`EngineError` (exit 6, one line),
never an internal error."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.db.database import Database
from engine.db.datadir import create_database
from engine.errors import EngineError
from engine.ingest.csvingest import ingest_csv
from engine.ingest.csvoptions import CsvOptions
from engine.ingest.pipeline import IngestOptions, ingest_lp
from engine.settings import Settings

PIECES = [
    b"ts", b"time", b"_time", b",", b";", b"\n", b"\r\n", b'"', b"a", b"1732400000",
    b"2024-11-24T00:00:00Z", b"1.5", b"true", b"\xff", b"\xc3", b"#datatype,string,double",
    b"#group,false,false", b",result,_value,_time,_field,_measurement", b"", b" ", b"=",
    b"\\", b"x=1", b"cpu", b"9" * 25, b"-", b"\x00", b"_measurement", b"host", b"5u", b"1i",
]  # fmt: skip

_numbers = itertools.count()
soups = st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join)


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    soups,
    st.sampled_from(["lp", "csv", "csv-by-column"]),
    st.sampled_from(["skip", "abort"]),
    st.sampled_from([1, 3, 5000]),
)
def test_no_input_is_an_internal_error(
    tmp_path: Path, data: bytes, kind: str, on_error: str, batch_rows: int
) -> None:
    name = f"d{next(_numbers)}"  # Hypothesis may run one example twice
    db = Database.open(create_database(tmp_path, name, Settings.build(wal_level="off")), name)
    options = IngestOptions(on_error=on_error, batch_rows=batch_rows)
    try:
        if kind == "lp":
            ingest_lp(db, io.BytesIO(data), "f", options)
        else:
            column = "_measurement" if kind == "csv-by-column" else None
            csv = CsvOptions(
                table="t", tags=["host"] if b"host" in data else [], table_column=column
            )
            ingest_csv(db, io.BytesIO(data), "f", csv, options)
    except EngineError:
        pass
    finally:
        db.close()
