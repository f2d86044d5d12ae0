"""Loading InfluxData's line-protocol conformance corpus: vendored in tests/data/lp-corpus
(MIT, see ORIGIN.md there) so a fresh clone tests itself; shared/lp-corpus as a fallback."""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
from pathlib import Path
from typing import Any

from engine.arrowmods import pc
from engine.ingest.lineprotocol import LineError, Point, parse
from engine.ingest.lpfast import LINE, PLAIN_LINE, parse_lines, split_lines
from engine.names import column_for_key
from engine.storage.schema import TS

CORPUS_PRECISION = {"1ns": "ns", "1µs": "us", "1ms": "ms", "1s": "s"}


def corpus_path() -> Path | None:
    here = Path(__file__).resolve().parent.parent
    for candidate in (
        os.environ.get("TSADMIN_LP_CORPUS"),
        here / "tests" / "data" / "lp-corpus" / "corpus.json.gz",
        here.parent / "shared" / "lp-corpus" / "corpus.json",
    ):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def text_of(value: Any) -> bytes:
    return base64.b64decode(value["binary"]) if isinstance(value, dict) else value.encode()


def decode_cases() -> list[dict[str, Any]]:
    path = corpus_path()
    assert path is not None, "line-protocol corpus not found"
    raw = path.read_bytes()
    text = gzip.decompress(raw) if path.suffix == ".gz" else raw
    return list(json.loads(text)["decode"].values())


def expected_points(case: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for point in case["output"]["result"]:
        fields = {}
        for f in point["fields"]:
            ((kind, value),) = f["value"].items()
            fields[text_of(f["key"]).decode(errors="surrogateescape")] = (kind, value)
        out.append(
            {
                "name": text_of(point["name"]).decode(errors="surrogateescape"),
                "tags": {
                    text_of(t["key"]).decode(errors="surrogateescape"): text_of(t["value"]).decode(
                        errors="surrogateescape"
                    )
                    for t in point["tags"]
                },
                "fields": fields,
                "time": point["time"],
            }
        )
    return out


_KIND = {"float64": "float", "int64": "int", "uint64": "uint", "bool": "bool", "string": "string"}


# The three ways line protocol is parsed: the exact parser alone, the vectorised path
# (with the exact parser for the lines it leaves), the native parser (the same).
PATHS = ["exact", "vectorised", "native"]


def our_points(case: dict[str, Any], path: str = "exact") -> list[dict[str, Any]]:
    """Our points for a corpus input, in the corpus's shape, by ``path`` (one of
    :data:`PATHS`); raises LineError."""
    raw = text_of(case["input"]["text"])
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise LineError("input is not valid UTF-8", 1, exc.start + 1) from exc
    precision = CORPUS_PRECISION[case["input"]["precision"]]
    default_time = case["input"]["defaultTime"]
    points = (
        parse(text, precision=precision, default_time=default_time)
        if path == "exact"
        else fast_points(text, precision, default_time, path)
    )
    return [
        {
            "name": p.measurement,
            "tags": p.tags,
            "fields": {k: (_KIND[p.kinds[k]], _json_value(v)) for k, v in p.fields.items()},
            "time": p.time,
        }
        for p in points
    ]


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def fast_points(
    text: str, precision: str, default_time: int, path: str = "vectorised"
) -> list[Point]:
    """``text`` through the vectorised or the native path (and the exact parser for the
    lines they leave), as points in line order."""
    data = text.encode()
    lines = split_lines(data)
    plain = None if path == "native" else pc.match_substring_regex(lines, PLAIN_LINE).to_pylist()
    parsed = parse_lines(
        lines,
        plain,
        1,
        precision=precision,
        divisor=1,
        default_time=default_time,
        ends_input=not data.endswith(b"\n"),
    )
    if parsed.errors:
        raise parsed.errors[0]
    if parsed.open_string_at is not None:
        rest = "\n".join(lines.slice(parsed.open_string_at).to_pylist())
        rest += "\n" if data.endswith(b"\n") else ""
        parsed.points += parse(
            rest,
            precision=precision,
            default_time=default_time,
            first_line=parsed.open_string_at + 1,
        )
    points = list(parsed.points)
    for part in parsed.parts:
        for row in part.rows.to_pylist():
            fields = {key: row[column_for_key(key)] for key in part.kinds}
            points.append(
                Point(
                    part.table,
                    {tag: row[column_for_key(tag)] for tag in part.tags},
                    fields,
                    dict(part.kinds),
                    row[TS],
                    row[LINE],
                )
            )
    return sorted(points, key=lambda point: point.line)
