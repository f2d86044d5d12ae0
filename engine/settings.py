"""Database settings: names, validation and parsing of user-facing values.

Settings live in the manifest (``engine/storage/manifest.py``) and every change is
also logged, fsynced, in the WAL. This module only knows values, not files.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, replace
from enum import IntEnum
from typing import Any

from engine.errors import InvalidArgument


class WalLevel(IntEnum):
    OFF = 0
    SYNC = 1
    FLUSH = 2
    BYRL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


PRECISIONS = ("ms", "us", "ns")
UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h|d|w)?\s*$")
_DURATION_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
    "w": 7 * 86400 * 1_000_000_000,
}

# Accepted spellings of each key: our own, KWDB's cluster settings, TDengine's.
KEY_ALIASES = {
    "wal_level": "wal_level",
    "ts.wal.wal_level": "wal_level",
    "wal": "wal_level",
    "wal_fsync_period": "wal_fsync_period",
    "walfsyncperiod": "wal_fsync_period",
    "wal.fsync_period": "wal_fsync_period",
    "ts.wal.flush_interval": "wal_fsync_period",
    "checkpoint_interval": "checkpoint_interval",
    "ts.wal.checkpoint_interval": "checkpoint_interval",
    "max_line_bytes": "max_line_bytes",
    "max_tags_per_series": "max_tags_per_series",
    "max_fields_per_table": "max_fields_per_table",
    "replica_hold_bytes": "replica_hold_bytes",
    "replica_hold_age": "replica_hold_age",
    "replica_timeout": "replica_timeout",
    "replica_snapshot_interval": "replica_snapshot_interval",
    "replica_snapshot_bytes": "replica_snapshot_bytes",
    "replica_pitr_window": "replica_pitr_window",
    "retention": "retention",
    "keep": "retention",
}
SETTABLE_KEYS = (
    "retention",
    "wal_level",
    "wal_fsync_period",
    "checkpoint_interval",
    "max_line_bytes",
    "max_tags_per_series",
    "max_fields_per_table",
    "replica_hold_bytes",
    "replica_hold_age",
    "replica_timeout",
    "replica_snapshot_interval",
    "replica_snapshot_bytes",
    "replica_pitr_window",
)
# Replication (engine/replication): WAL a replica still needs is kept up to these
# limits, past which the replica is reseeded from a snapshot; a byrl write waits this
# long for the store's confirmation. The store gets a fresh snapshot once this much
# time has passed or this much log was shipped since the last one (whichever first),
# and keeps what a restore to any point of the window needs (the rest is deleted).
REPLICA_DEFAULTS: dict[str, Any] = {
    "replica_hold_bytes": 1 << 30,
    "replica_hold_age": "1d",
    "replica_timeout": "10s",
    "replica_snapshot_interval": "1h",
    "replica_snapshot_bytes": 256 << 20,
    "replica_pitr_window": "7d",
}
# Limits on one input line and on a table's width: a line over them is refused on its
# own (a rejected line), so one hostile or runaway line costs bounded time and memory.
LIMITS = {
    "max_line_bytes": (1 << 20, 256, 1 << 30),  # default, lowest, highest
    "max_tags_per_series": (1_024, 1, 1_000_000),
    "max_fields_per_table": (10_000, 1, 1_000_000),
}


def parse_duration_ns(
    text: str | int,
    default_unit: str = "s",
    what: str = "duration",
    *,
    require_unit: bool = False,
) -> int:
    """Parse ``30s``, ``5m``, ``1d``, ``250ms``, ``1.5s`` (or a bare number in
    ``default_unit``; with ``require_unit`` a bare number other than 0 is refused, where
    a reader could not tell its unit: ``retention 6``)."""
    if isinstance(text, int):
        return text * _DURATION_NS[default_unit]
    match = _DURATION_RE.match(str(text))
    if not match:
        raise InvalidArgument(
            f"invalid {what} {text!r}", hint="use a number with a unit: 500ms, 30s, 5m, 1h, 1d"
        )
    number, unit = match.group(1), match.group(2)
    if unit is None and require_unit and float(number) != 0:
        raise InvalidArgument(
            f"{what} {text!r} has no unit",
            hint=f"give one: {number}s, {number}m, {number}h or {number}d",
        )
    return int(float(number) * _DURATION_NS[unit or default_unit])


def format_duration_ns(ns: int) -> str:
    """The shortest exact spelling of a duration (``60000000000`` -> ``1m``)."""
    if ns == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s", "ms", "us", "ns"):
        size = _DURATION_NS[unit]
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def parse_wal_level(value: str | int) -> WalLevel:
    """Accept ``off|sync|flush|byrl`` or ``0..3``."""
    text = str(value).strip().lower()
    if text.isdigit() and int(text) in {lvl.value for lvl in WalLevel}:
        return WalLevel(int(text))
    for level in WalLevel:
        if text == level.label:
            return level
    raise InvalidArgument(f"invalid wal_level {value!r}", hint="use off|sync|flush|byrl or 0|1|2|3")


def ns_per_unit(precision: str) -> int:
    """Nanoseconds in one timestamp unit of ``precision``."""
    return 1_000_000_000 // UNITS_PER_SECOND[precision]


def units_from_ns(ns: int, precision: str) -> int:
    """The first timestamp in ``precision`` units at or after ``ns`` (a bound stays a
    bound: ``t * unit >= ns`` iff ``t >= units_from_ns(ns)``)."""
    return -(-ns // ns_per_unit(precision))


def parse_precision(value: str) -> str:
    if value not in PRECISIONS:
        raise InvalidArgument(f"invalid precision {value!r}", hint="use ms, us or ns")
    return value


@dataclass(frozen=True)
class Settings:
    precision: str = "ns"
    wal_level: WalLevel = WalLevel.SYNC
    wal_fsync_period_ms: int = 1000
    checkpoint_interval_ns: int = 60 * 1_000_000_000
    partition_ns: int = 86400 * 1_000_000_000
    max_line_bytes: int = LIMITS["max_line_bytes"][0]
    max_tags_per_series: int = LIMITS["max_tags_per_series"][0]
    max_fields_per_table: int = LIMITS["max_fields_per_table"][0]
    replicas: tuple[str, ...] = ()  # replica stores, as URLs (engine/replication)
    replica_hold_bytes: int = REPLICA_DEFAULTS["replica_hold_bytes"]
    replica_hold_age_ns: int = 86400 * 1_000_000_000
    replica_timeout_ms: int = 10_000
    replica_snapshot_interval_ns: int = 3600 * 1_000_000_000
    replica_snapshot_bytes: int = REPLICA_DEFAULTS["replica_snapshot_bytes"]
    replica_pitr_window_ns: int = 7 * 86400 * 1_000_000_000
    retention_ns: int = 0  # 0: keep forever (engine/storage/retention.py)

    def to_json(self) -> dict[str, Any]:
        # replication keys only when set: files of databases without replicas stay as
        # they were before replication existed
        # (and retention only when set, for the same reason)
        kept = {"retention": self.retention_label} if self.retention_ns else {}
        return {**self._base_json(), **kept, **self._replication_json()}

    def to_display(self) -> dict[str, Any]:
        """Every setting with its value, the replication ones too (``config get``)."""
        return {
            **self._base_json(),
            "retention": self.retention_label,
            "replicas": list(self.replicas),
            **self._replication_values(),
        }

    @property
    def retention_label(self) -> str:
        return format_duration_ns(self.retention_ns) if self.retention_ns else "none"

    def _replication_values(self) -> dict[str, Any]:
        return {
            "replica_hold_bytes": self.replica_hold_bytes,
            "replica_hold_age": format_duration_ns(self.replica_hold_age_ns),
            "replica_timeout": format_duration_ns(self.replica_timeout_ms * 1_000_000),
            "replica_snapshot_interval": format_duration_ns(self.replica_snapshot_interval_ns),
            "replica_snapshot_bytes": self.replica_snapshot_bytes,
            "replica_pitr_window": format_duration_ns(self.replica_pitr_window_ns),
        }

    def _replication_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.replicas:
            out["replicas"] = list(self.replicas)
        current, defaults = self._replication_values(), Settings()._replication_values()
        out.update({k: v for k, v in current.items() if v != defaults[k]})
        return out

    def _base_json(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "wal_level": self.wal_level.label,
            "wal_fsync_period": self.wal_fsync_period_ms,
            "checkpoint_interval": format_duration_ns(self.checkpoint_interval_ns),
            "partition": format_duration_ns(self.partition_ns),
            "max_line_bytes": self.max_line_bytes,
            "max_tags_per_series": self.max_tags_per_series,
            "max_fields_per_table": self.max_fields_per_table,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        return cls.build(
            precision=data.get("precision", "ns"),
            wal_level=data.get("wal_level", "sync"),
            wal_fsync_period=data.get("wal_fsync_period", 1000),
            checkpoint_interval=data.get("checkpoint_interval", "1m"),
            partition=data.get("partition", "1d"),
            retention=data.get("retention", "none"),
            **{key: data.get(key, default) for key, (default, _, _) in LIMITS.items()},
            replicas=data.get("replicas", ()),
            **{key: data.get(key, default) for key, default in REPLICA_DEFAULTS.items()},
        )

    @classmethod
    def build(
        cls,
        *,
        precision: str = "ns",
        wal_level: str | int = "sync",
        wal_fsync_period: str | int = 1000,
        checkpoint_interval: str | int = "1m",
        partition: str | int = "1d",
        retention: str | int = "none",
        max_line_bytes: str | int = LIMITS["max_line_bytes"][0],
        max_tags_per_series: str | int = LIMITS["max_tags_per_series"][0],
        max_fields_per_table: str | int = LIMITS["max_fields_per_table"][0],
        replicas: Any = (),
        replica_hold_bytes: str | int = REPLICA_DEFAULTS["replica_hold_bytes"],
        replica_hold_age: str | int = REPLICA_DEFAULTS["replica_hold_age"],
        replica_timeout: str | int = REPLICA_DEFAULTS["replica_timeout"],
        replica_snapshot_interval: str | int = REPLICA_DEFAULTS["replica_snapshot_interval"],
        replica_snapshot_bytes: str | int = REPLICA_DEFAULTS["replica_snapshot_bytes"],
        replica_pitr_window: str | int = REPLICA_DEFAULTS["replica_pitr_window"],
    ) -> Settings:
        """Validate user-facing values and build settings."""
        return cls(
            precision=parse_precision(precision),
            wal_level=parse_wal_level(wal_level),
            wal_fsync_period_ms=_parse_fsync_period(wal_fsync_period),
            checkpoint_interval_ns=_parse_checkpoint_interval(checkpoint_interval),
            partition_ns=_parse_partition(partition),
            retention_ns=parse_retention(retention),
            max_line_bytes=_parse_limit("max_line_bytes", max_line_bytes),
            max_tags_per_series=_parse_limit("max_tags_per_series", max_tags_per_series),
            max_fields_per_table=_parse_limit("max_fields_per_table", max_fields_per_table),
            replicas=tuple(str(url) for url in replicas),
            replica_hold_bytes=_parse_hold_bytes(replica_hold_bytes),
            replica_hold_age_ns=_parse_hold_age(replica_hold_age),
            replica_timeout_ms=_parse_replica_timeout(replica_timeout),
            replica_snapshot_interval_ns=_parse_store_duration(
                "replica_snapshot_interval", replica_snapshot_interval
            ),
            replica_snapshot_bytes=_parse_snapshot_bytes(replica_snapshot_bytes),
            replica_pitr_window_ns=_parse_store_duration(
                "replica_pitr_window", replica_pitr_window
            ),
        )

    def with_value(self, key: str, value: str) -> Settings:
        """A copy with one settable key changed (any accepted alias of the key)."""
        canonical = canonical_key(key)
        if canonical == "wal_level":
            return replace(self, wal_level=parse_wal_level(value))
        if canonical == "wal_fsync_period":
            return replace(self, wal_fsync_period_ms=_parse_fsync_period(value))
        if canonical == "max_line_bytes":
            return replace(self, max_line_bytes=_parse_limit(canonical, value))
        if canonical == "max_tags_per_series":
            return replace(self, max_tags_per_series=_parse_limit(canonical, value))
        if canonical == "max_fields_per_table":
            return replace(self, max_fields_per_table=_parse_limit(canonical, value))
        if canonical == "replica_hold_bytes":
            return replace(self, replica_hold_bytes=_parse_hold_bytes(value))
        if canonical == "replica_hold_age":
            return replace(self, replica_hold_age_ns=_parse_hold_age(value))
        if canonical == "replica_timeout":
            return replace(self, replica_timeout_ms=_parse_replica_timeout(value))
        if canonical == "retention":
            return replace(self, retention_ns=parse_retention(value))
        if canonical == "replica_snapshot_bytes":
            return replace(self, replica_snapshot_bytes=_parse_snapshot_bytes(value))
        if canonical == "replica_snapshot_interval":
            ns = _parse_store_duration(canonical, value)
            return replace(self, replica_snapshot_interval_ns=ns)
        if canonical == "replica_pitr_window":
            return replace(self, replica_pitr_window_ns=_parse_store_duration(canonical, value))
        return replace(self, checkpoint_interval_ns=_parse_checkpoint_interval(value))

    def detached(self) -> Settings:
        """These settings for a copy of the database (a restore): no replica stores (they
        replicate the original), so byrl, which needs one, becomes sync."""
        level = WalLevel.SYNC if self.wal_level is WalLevel.BYRL else self.wal_level
        return replace(self, replicas=(), wal_level=level)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def partition_units(self) -> int:
        """Partition width in timestamp units of this database's precision."""
        return self.partition_ns // ns_per_unit(self.precision)


def canonical_key(key: str) -> str:
    canonical = KEY_ALIASES.get(key.strip().lower())
    if canonical is None:
        raise InvalidArgument(
            f"unknown setting {key!r}",
            hint=f"settable keys: {', '.join(SETTABLE_KEYS)} "
            "(or ts.wal.wal_level, ts.wal.checkpoint_interval)",
        )
    return canonical


def _parse_fsync_period(value: str | int) -> int:
    ms = parse_duration_ns(value, default_unit="ms", what="wal_fsync_period") // 1_000_000
    if not 0 <= ms <= 180_000:
        raise InvalidArgument(f"wal_fsync_period {value!r} out of range", hint="use 0 to 180000 ms")
    return ms


def _parse_checkpoint_interval(value: str | int) -> int:
    ns = parse_duration_ns(value, default_unit="s", what="checkpoint_interval", require_unit=True)
    if ns < 1_000_000_000:
        raise InvalidArgument(f"checkpoint_interval {value!r} is too short", hint="use at least 1s")
    return ns


def _parse_partition(value: str | int) -> int:
    ns = parse_duration_ns(value, default_unit="s", what="partition")
    if ns < 60 * 1_000_000_000:
        raise InvalidArgument(f"partition {value!r} is too narrow", hint="use at least 1m")
    return ns


def parse_retention(value: str | int) -> int:
    """``30d``, ``12w``, ``1h`` (at least an hour, as InfluxDB's shortest policy), or
    ``0``/``none``/``inf``: keep forever (0)."""
    text = str(value).strip().lower()
    if text in ("0", "none", "inf", "forever", ""):
        return 0
    ns = parse_duration_ns(text, default_unit="d", what="retention", require_unit=True)
    if ns < 3600 * 1_000_000_000:
        raise InvalidArgument(
            f"retention {value!r} is too short", hint="use 1h or more, or none to keep forever"
        )
    return ns


def _parse_limit(key: str, value: str | int) -> int:
    _, low, high = LIMITS[key]
    text = str(value).strip().replace("_", "")
    if not text.isdigit() or not low <= int(text) <= high:
        raise InvalidArgument(f"{key} {value!r} out of range", hint=f"use {low} to {high}")
    return int(text)


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(value: str | int, what: str) -> int:
    """``1073741824``, ``512MiB``, ``1g``: bytes (binary units)."""
    match = _SIZE_RE.match(str(value))
    if not match:
        raise InvalidArgument(f"invalid {what} {value!r}", hint="use bytes or 512MiB, 1GiB")
    unit = (match.group(2) or "b").lower()[0]
    return int(match.group(1)) * _SIZE_UNITS[unit]


def _parse_hold_bytes(value: str | int) -> int:
    size = parse_size(value, "replica_hold_bytes")
    if size < 1 << 20:
        raise InvalidArgument(f"replica_hold_bytes {value!r} is too small", hint="use 1MiB or more")
    return size


def _parse_hold_age(value: str | int) -> int:
    ns = parse_duration_ns(value, default_unit="s", what="replica_hold_age", require_unit=True)
    if ns < 60 * 1_000_000_000:
        raise InvalidArgument(f"replica_hold_age {value!r} is too short", hint="use 1m or more")
    return ns


def _parse_store_duration(key: str, value: str | int) -> int:
    """A duration of the replica store's upkeep: a unit is required (``1h``, ``7d``)."""
    ns = parse_duration_ns(str(value).strip(), what=key, require_unit=True)
    if ns < 1_000_000_000:
        raise InvalidArgument(f"{key} {value!r} is too short", hint="use 1s or more")
    return ns


def _parse_snapshot_bytes(value: str | int) -> int:
    size = parse_size(value, "replica_snapshot_bytes")
    if size < 64 << 10:
        raise InvalidArgument(
            f"replica_snapshot_bytes {value!r} is too small", hint="use 64KiB or more"
        )
    return size


def _parse_replica_timeout(value: str | int) -> int:
    ms = (
        parse_duration_ns(value, default_unit="ms", what="replica_timeout", require_unit=True)
        // 1_000_000
    )
    if not 100 <= ms <= 600_000:
        raise InvalidArgument(f"replica_timeout {value!r} out of range", hint="use 100ms to 10m")
    return ms


def tunable(variable: str, default: float) -> float:
    """A timing knob from the environment (``TSADMIN_SHIP_INTERVAL`` and the like), read
    when it is used, so a process that changes its environment sees the change."""
    return float(os.environ.get(variable, default))
