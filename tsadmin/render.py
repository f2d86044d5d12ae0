"""Rendering results: tables for people, JSON, JSON lines and CSV for scripts. Data goes to stdout.

JSON is strict (RFC 8259): a float that is not finite is written as the string
``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, never as a bare token. Floats are
printed in full (Python's shortest round-trip form), never rounded, except
durations in reports (a key ``seconds`` or ending in ``_seconds`` or ``_s``), which
are milliseconds at best: they are shown to the millisecond.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

FORMATS = ("table", "json", "jsonl", "csv")


def emit(data: Any, fmt: str, *, columns: Sequence[str] | None = None) -> None:
    """Print ``data`` (a list of records or one record) in ``fmt``."""
    data = _durations_to_ms(data)
    if fmt == "json":
        sys.stdout.write(json.dumps(strict(data), indent=2, default=_jsonable, allow_nan=False))
        sys.stdout.write("\n")
        return
    if fmt == "jsonl":  # one compact object per line: what jq and log shippers stream
        for record in data if isinstance(data, list) else [data]:
            sys.stdout.write(json.dumps(strict(record), default=_jsonable, allow_nan=False))
            sys.stdout.write("\n")
        return
    records = data if isinstance(data, list) else [_flatten(data)]
    if fmt == "csv":
        _emit_csv(records, columns)
    elif isinstance(data, list):
        _emit_table(records, columns)
    else:
        _emit_pairs(_flatten(data))


def emit_sections(sections: Sequence[Any], fmt: str) -> None:
    """Several results one after the other, a blank line between them: what a command
    shows as tables it also gives as CSV, section for section."""
    for i, section in enumerate(sections):
        if i:
            print()
        emit(section, fmt)


def _jsonable(value: Any) -> Any:
    return str(value)


def _is_duration(key: str) -> bool:
    return key == "seconds" or key.endswith(("_seconds", "_s"))


def _durations_to_ms(value: Any, key: str = "") -> Any:
    if isinstance(value, float) and _is_duration(key) and math.isfinite(value):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _durations_to_ms(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_durations_to_ms(v, key) for v in value]
    return value


def strict(value: Any) -> Any:
    """``value`` with every non-finite float spelled as a string."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            for inner, item in _flatten(value).items():
                flat[f"{key}.{inner}"] = item
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            # a few items in full (db show's WAL files), many as a count
            flat[key] = (
                "; ".join(" ".join(f"{k}={v}" for k, v in item.items()) for item in value)
                if len(value) <= 4
                else f"{len(value)} item(s)"
            )
        elif isinstance(value, list):
            flat[key] = ", ".join(str(v) for v in value)
        else:
            flat[key] = value
    return flat


def _keys(records: list[dict[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns:
        return list(columns)
    keys: list[str] = []
    for record in records:
        keys += [k for k in record if k not in keys]
    return keys


def _emit_csv(records: list[dict[str, Any]], columns: Sequence[str] | None) -> None:
    keys = _keys(records, columns)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(keys)
    for record in records:
        writer.writerow(["" if record.get(k) is None else record.get(k) for k in keys])


def _emit_table(records: list[dict[str, Any]], columns: Sequence[str] | None) -> None:
    keys = _keys(records, columns)
    if not records:
        print("(none)")
        return
    from tabulate import tabulate  # (50 ms to import: only a table pays it)

    rows = [[cell_text(record.get(k)) for k in keys] for record in records]
    print(tabulate(rows, headers=keys, tablefmt="simple", disable_numparse=True))


def _emit_pairs(record: dict[str, Any]) -> None:
    from tabulate import tabulate

    print(tabulate([[k, cell_text(v)] for k, v in record.items()], tablefmt="plain"))


def cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # the shortest form that reads back as the same float
    return str(value)


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
