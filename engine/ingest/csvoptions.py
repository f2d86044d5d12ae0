"""What a CSV input is told (:class:`CsvOptions`) and how its timestamps read
(:class:`TimeReader`): shared by plain CSV (:mod:`engine.ingest.csvingest`) and InfluxDB 2's
annotated CSV (:mod:`engine.ingest.annotatedcsv`), so neither imports the other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.arrowmods import pa, pc
from engine.errors import InvalidArgument
from engine.ingest.pipeline import clip

_EPOCH_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_PRECISION_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000}


@dataclass
class CsvOptions:
    table: str = ""
    ts_column: str = ""  # "": the first of TS_CANDIDATES the header has
    ts_format: str = "auto"  # auto | s | ms | us | ns | strptime format
    tags: list[str] = field(default_factory=list)
    table_column: str | None = None  # the table of each row comes from this column
    schema: dict[str, str] = field(
        default_factory=dict
    )  # field -> float64|int64|uint64|bool|string
    delimiter: str = ""  # "": the one of , ; tab | the header line holds most of
    tz: str = "UTC"  # the zone of timestamps written without one

    def __post_init__(self) -> None:
        if self.delimiter in ("\\t", "tab"):
            self.delimiter = "\t"
        if self.delimiter == "":
            return
        if len(self.delimiter) != 1 or self.delimiter in ('"', "\n", "\r"):
            raise InvalidArgument(
                f"invalid delimiter {self.delimiter!r}",
                hint="one character: , ; | or tab",
                param="delimiter",
            )


def convert_each(
    values: pa.Array, convert: Callable[[pa.Array], pa.Array], target: pa.DataType
) -> tuple[pa.Array, list[int]]:
    """``convert(values)``, where the values it refuses become null and are listed: the
    array is halved until each refusal is alone, so a clean block costs one conversion
    and each bad value a few more."""
    try:
        return convert(values), []
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        pass
    if len(values) == 1:
        return pa.nulls(1, target), [0]
    half = len(values) // 2
    low, low_bad = convert_each(values.slice(0, half), convert, target)
    high, high_bad = convert_each(values.slice(half), convert, target)
    return pa.concat_arrays([low, high]), low_bad + [half + i for i in high_bad]


class TimeReader:
    """Timestamps as text to integers in the database's precision; a missing or
    unreadable one, or one finer than the precision, fails its row. With ``auto`` the
    first values decide: integers are epoch times in the unit their magnitude shows
    (today is about 1.7e9 s, 1.7e12 ms, 1.7e15 us, 1.7e18 ns), anything else is ISO 8601
    (with ``T`` or a space, any fraction to nanoseconds, ``Z`` or an offset, or no zone:
    then the zone given)."""

    def __init__(self, csv: CsvOptions, precision: str) -> None:
        self.format = csv.ts_format
        self.tz = csv.tz
        self.unit_ns = _PRECISION_NS[precision]
        self.precision = precision
        _check_zone(csv.tz)

    def read(self, values: pa.ChunkedArray, bad: dict[int, str]) -> pa.Array:
        text = values.combine_chunks()
        for index in pc.indices_nonzero(pc.is_null(text)).to_pylist():
            bad.setdefault(index, "no timestamp")
        if self.format == "auto" and len(text.drop_null()):
            self.format = _auto_format(text.drop_null())
        if self.format in _EPOCH_UNITS:
            scale = _EPOCH_UNITS[self.format]
            nanos, failed = convert_each(
                text, lambda chunk: pc.multiply_checked(chunk.cast(pa.int64()), scale), pa.int64()
            )
        elif self.format == "iso" or self.format == "auto":
            nanos, failed = convert_each(text, self._iso, pa.int64())
        else:
            nanos, failed = self._strptime(text)
        for index in failed:
            if text[index].is_valid:
                bad.setdefault(index, f"unreadable timestamp {clip(text[index].as_py())!r}")
        return self._to_precision(nanos, bad)

    def _iso(self, chunk: pa.Array) -> pa.Array:
        try:
            return chunk.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
        except pa.ArrowInvalid:
            naive = chunk.cast(pa.timestamp("ns"))  # still refused: no ISO time at all
            return _in_zone(naive, self.tz).cast(pa.int64())

    def _strptime(self, text: pa.Array) -> tuple[pa.Array, list[int]]:
        parsed = pc.strptime(text, format=self.format, unit="ns", error_is_null=True)
        if not parsed.type.tz:
            parsed = _in_zone(parsed, self.tz)
        failed = pc.and_(pc.is_valid(text), pc.is_null(parsed))
        return parsed.cast(pa.int64()), pc.indices_nonzero(failed).to_pylist()

    def _to_precision(self, nanos: pa.Array, bad: dict[int, str]) -> pa.Array:
        if self.unit_ns == 1:
            return nanos
        finer = pc.not_equal(
            pc.subtract(nanos, pc.multiply(pc.divide(nanos, self.unit_ns), self.unit_ns)), 0
        )
        for index in pc.indices_nonzero(finer.fill_null(False)).to_pylist():
            bad.setdefault(
                index, f"timestamp finer than the database's precision ({self.precision})"
            )
        return pc.divide(nanos, self.unit_ns)


def _auto_format(present: pa.Array) -> str:
    try:
        numbers = present.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return "iso"
    largest = pc.max(pc.abs(numbers)).as_py() or 0
    for unit, below in (("s", 10**11), ("ms", 10**14), ("us", 10**17)):
        if largest < below:
            return unit
    return "ns"


def _in_zone(values: Any, tz: str) -> Any:
    """Naive timestamps read as times in ``tz``, as UTC."""
    naive = values.cast(pa.timestamp(values.type.unit))
    zoned = pc.assume_timezone(naive, tz, ambiguous="earliest", nonexistent="earliest")
    return zoned.cast(pa.timestamp(values.type.unit, tz="UTC"))


def _check_zone(tz: str) -> None:
    try:
        _in_zone(pa.array([0], pa.timestamp("ns")), tz)
    except (pa.ArrowInvalid, pa.ArrowKeyError, pa.ArrowNotImplementedError) as exc:
        raise InvalidArgument(f"unknown time zone {tz!r} ({exc})", param="tz") from None
