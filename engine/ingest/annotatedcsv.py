"""InfluxDB 2 annotated CSV, as ``influx query --raw`` and the UI's export write it.

The input is a run of tables, each introduced by annotation rows and a header,
and separated by a blank line::

    #group,false,false,true,true,false,false,true,true,true
    #datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string
    #default,_result,,,,,,,,
    ,result,table,_start,_stop,_time,_value,_field,_measurement,host
    ,,0,2024-11-24T00:00:00Z,2024-11-24T01:00:00Z,2024-11-24T00:00:10Z,1.5,usage,cpu,a

Each row is one field value of one point: ``_measurement`` is the table (else
the table the options name), ``_field`` the field, ``_value`` its value, typed
by the ``#datatype`` of ``_value`` (``double``, ``long``, ``unsignedLong``,
``boolean``, ``string``), and ``_time`` the timestamp (RFC 3339). The
annotation column and ``result``, ``table``, ``_start``, ``_stop`` are the
query's, not the data's, and are dropped; every other column is a tag. The
rows of one point arrive as several rows (one per field); writes are upserts,
so they come together as one point again. ``#default`` fills empty cells. A
row that fails (wrong width, no time, a value not of its type, no field name)
is rejected alone with its row number, as in plain CSV.
"""

from __future__ import annotations

import csv as stdcsv
import io
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

from engine.arrowmods import pa
from engine.db.database import Batch
from engine.errors import BadInput
from engine.ingest.csvoptions import CsvOptions, TimeReader
from engine.ingest.inputs import CountingReader
from engine.ingest.pipeline import FieldKinds, Progress, Run, clip
from engine.names import TIME_KEY, column_for_key, is_valid
from engine.storage.schema import FIELD_TYPES, TS

ANNOTATIONS = ("#group", "#datatype", "#default")
KINDS = {
    "double": "float64",
    "long": "int64",
    "unsignedLong": "uint64",
    "boolean": "bool",
    "string": "string",
}
QUERY_COLUMNS = {"", "result", "table", "_start", "_stop"}


def is_annotated(head: bytes) -> bool:
    """Whether the input starts like annotated CSV (its first line is an annotation)."""
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0]
    return any(first.startswith(a.encode() + b",") for a in ANNOTATIONS)


def ingest(run: Run, stream: CountingReader, csv: CsvOptions, progress: Progress | None) -> None:
    _Annotated(run, csv).read(stream, progress)


class _Annotated:
    def __init__(self, run: Run, csv: CsvOptions) -> None:
        self.run = run
        self.source = run.source
        self.table = csv.table
        self.options = run.options
        self.committer = run.committer
        self.kinds = FieldKinds(run.db, run.source)
        precision = run.db.settings.precision
        self.times = TimeReader(CsvOptions(ts_format="iso", tz=csv.tz), precision)
        self.pending: list[tuple[int, dict[str, Any]]] = []  # (row number, point)

    def read(self, stream: CountingReader, progress: Progress | None) -> None:
        binary = cast(BinaryIO, stream)
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        rows = stdcsv.reader(text)
        try:
            for number, point in self._points(rows):
                self.pending.append((number, point))
                if len(self.pending) >= self.options.batch_rows:
                    self._flush()
                    if progress:
                        progress(self.run.report.bytes, self.run.report.rows)
        except (UnicodeDecodeError, stdcsv.Error) as exc:
            raise BadInput(
                f"{self.source}:{rows.line_num}: unreadable CSV ({exc})",
                hint="fix the file from that row on",
                source=self.source,
                line=rows.line_num,
            ) from None
        self._flush()

    def _points(self, rows: Any) -> Iterator[tuple[int, dict[str, Any]]]:
        """Each data row as ``{time, table, field, kind, value, tags}``."""
        types: list[str] = []
        defaults: list[str] = []
        header: list[str] | None = None
        for row in rows:
            number = rows.line_num
            if not row or row == [""]:
                header = None  # a blank line ends a table
                continue
            first = row[0]
            if first.startswith("#"):
                if first == "#datatype":
                    types, header = row, None
                elif first == "#default":
                    defaults, header = row, None
                continue
            if header is None:
                header = row
                self._check_header(header, number)
                continue
            if len(row) != len(header):
                self._reject(number, f"{len(row)} columns, the header has {len(header)}", row)
                continue
            cells = [
                cell or (defaults[i] if i < len(defaults) else "") for i, cell in enumerate(row)
            ]
            point = self._point(dict(zip(header, cells, strict=True)), header, types, number, row)
            if point is not None:
                yield number, point

    def _check_header(self, header: list[str], number: int) -> None:
        for name in header:
            if name not in QUERY_COLUMNS and not is_valid("tag", name):
                raise BadInput(
                    f"{self.source}:{number}: invalid column name {clip(name)!r}",
                    source=self.source,
                    line=number,
                )
        for needed in ("_time", "_value", "_field"):
            if needed not in header:
                raise BadInput(
                    f"{self.source}:{number}: annotated CSV without a {needed} column",
                    hint="export the raw query result (influx query --raw), before any pivot",
                    source=self.source,
                    line=number,
                )

    def _point(
        self, cells: dict[str, str], header: list[str], types: list[str], number: int, row: Any
    ) -> dict[str, Any] | None:
        table = cells.get("_measurement") or self.table
        datatype = types[header.index("_value")] if len(types) == len(header) else "string"
        kind = KINDS.get(datatype)
        problem = None
        if not table or not is_valid("table", table):
            problem = f"no valid table name ({clip(table)!r})"
        elif not cells["_field"] or cells["_field"] == TIME_KEY:
            problem = f"invalid field name {clip(cells['_field'])!r}"
        elif kind is None:
            problem = f"the _value column's datatype {datatype!r} is not a field type"
        elif not cells["_time"]:
            problem = "no _time"
        value = None
        if problem is None and cells["_value"] != "":
            try:
                value = _value(cells["_value"], kind or "string")
            except ValueError:
                problem = f"_value {clip(cells['_value'])!r} is not {datatype}"
        if problem is not None:
            self._reject(number, problem, row)
            return None
        tags = {
            name: cell
            for name, cell in cells.items()
            if name not in QUERY_COLUMNS and not name.startswith("_") and cell != ""
        }
        if TIME_KEY in tags:
            self._reject(number, "tag key 'time' is invalid", row)
            return None
        return {
            "time": cells["_time"],
            "table": table,
            "field": cells["_field"],
            "kind": kind,
            "value": value,
            "tags": tags,
        }

    def _flush(self) -> None:
        if not self.pending:
            return
        times = pa.chunked_array([pa.array([p["time"] for _, p in self.pending], pa.string())])
        bad: dict[int, str] = {}
        read = self.times.read(times, bad)
        expired = {i for i in self.run.expired(read) if i not in bad}
        stamps = read.to_pylist()
        groups: dict[tuple[str, str, str, tuple[str, ...]], list[int]] = {}
        for index, (number, point) in enumerate(self.pending):
            if index in bad or index in expired:
                reason = bad.get(index) or self.run.too_old_reason()
                self._reject(number, reason, [point["time"]], dropped=index in expired)
                continue
            key = (point["table"], point["field"], point["kind"], tuple(point["tags"]))
            groups.setdefault(key, []).append(index)
        for (table, field, kind, tags), indices in groups.items():
            self._add(table, field, kind, list(tags), indices, stamps)
        self.committer.commit()
        self.pending = []

    def _add(
        self,
        table: str,
        field: str,
        kind: str,
        tags: list[str],
        indices: list[int],
        stamps: list[Any],
    ) -> None:
        problem = self.kinds.problem(table, tags, {field: kind})
        if problem is not None:
            for index in indices:
                self._reject(self.pending[index][0], problem, [])
            return
        points = [self.pending[i][1] for i in indices]
        columns: dict[str, pa.Array] = {TS: pa.array([stamps[i] for i in indices], pa.int64())}
        for tag in tags:
            columns[column_for_key(tag)] = pa.array([p["tags"][tag] for p in points], pa.string())
        columns[column_for_key(field)] = pa.array([p["value"] for p in points], FIELD_TYPES[kind])
        self.committer.add(Batch(table, pa.table(columns), [column_for_key(t) for t in tags]))

    def _reject(self, number: int, reason: str, row: list[str], *, dropped: bool = False) -> None:
        out = io.StringIO()
        stdcsv.writer(out, lineterminator="").writerow(row)
        self.run.refuse(number, reason, out.getvalue(), dropped=dropped)


def _value(text: str, kind: str) -> Any:
    if kind == "float64":
        return float(text)
    if kind in ("int64", "uint64"):
        number = int(text)
        low, high = (0, 2**64 - 1) if kind == "uint64" else (-(2**63), 2**63 - 1)
        if not low <= number <= high:
            raise ValueError(text)
        return number
    if kind == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false"):
            raise ValueError(text)
        return lowered == "true"
    return text
