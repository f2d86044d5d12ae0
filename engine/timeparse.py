"""Parsing points in time given by users: epoch numbers, ISO 8601, ``now-1h``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from engine.errors import InvalidArgument
from engine.settings import UNITS_PER_SECOND, parse_duration_ns

_RELATIVE = re.compile(r"^now(?:\s*([+-])\s*(.+))?$")
_EPOCH_WITH_UNIT = re.compile(r"(-?[0-9]+)(s|ms|us|µs|ns)")


def parse_time(text: str, precision: str) -> int:
    """A time as an integer in ``precision`` units since the epoch (UTC).

    Accepts an integer (already in ``precision``), an integer with a unit as
    InfluxQL writes it (``1732400020s``, ``…ms``, ``…us``, ``…ns``), ISO 8601 (a
    naive time is UTC), and ``now``, ``now-1h``, ``now+30m``.
    """
    per_second = UNITS_PER_SECOND[precision]
    value = text.strip()
    if re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    epoch = _EPOCH_WITH_UNIT.fullmatch(value)
    if epoch:
        number, unit = int(epoch.group(1)), epoch.group(2).replace("µ", "u")
        return number * per_second // UNITS_PER_SECOND[unit]
    relative = _RELATIVE.match(value)
    if relative:
        now_ns = time.time_ns()
        if relative.group(1):
            offset = parse_duration_ns(relative.group(2), what="time offset")
            now_ns += offset if relative.group(1) == "+" else -offset
        return now_ns * per_second // 1_000_000_000
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"invalid time {text!r}",
            hint="use ISO 8601 (2024-01-31T12:00:00Z), an epoch number (with a unit: "
            "1732400020s), or now-1h",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * per_second // 1_000_000


def iso_utc(unix_seconds: float | None) -> str | None:
    """A moment as reports print it: ISO 8601 in UTC to the millisecond
    (``2026-12-06T05:30:07.123Z``); None stays None."""
    if unix_seconds is None:
        return None
    moment = datetime.fromtimestamp(unix_seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
