"""A deterministic generator of TSBS "cpu-only" shaped data, as Arrow tables.

Measurement ``cpu``; 10 tags per host (hostname, region, datacenter, rack, os,
arch, team, service, service_version, service_environment); 10 integer fields
(usage_user ... usage_guest_nice); one point per host every 10 s, hosts
interleaved. Row ``i`` is always the same row, so any slice can be generated alone.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

HOSTS = 1000
START_NS = 1_700_000_000_000_000_000
STEP_NS = 10_000_000_000
TAGS = [
    "hostname",
    "region",
    "datacenter",
    "rack",
    "os",
    "arch",
    "team",
    "service",
    "service_version",
    "service_environment",
]
FIELDS = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
]


def cpu_rows(start_row: int, rows: int, hosts: int = HOSTS) -> pa.Table:
    index = pa.array(range(start_row, start_row + rows), pa.int64())
    host = pc.remainder(index, hosts)
    step = pc.divide(index, hosts)
    columns: dict[str, Any] = {"ts": pc.add(pc.multiply(step, STEP_NS), START_NS)}
    for i, tag in enumerate(TAGS):
        source = host if i == 0 else pc.remainder(host, 3 + i)
        columns[tag] = pc.binary_join_element_wise(f"{tag}_", source.cast(pa.string()), "")
    for i, name in enumerate(FIELDS):
        columns[name] = _percent(index, i)
    return pa.table(columns)


def _percent(index: pa.Array, salt: int) -> pa.Array:
    """A deterministic, well-mixed value in 0..99 per row (multiplicative hashing), so the
    data compresses like real metrics rather than like a repeating pattern."""
    x = pc.bit_wise_and(pc.multiply(pc.add(index, salt * 1_000_003), 2_654_435_761), 0xFFFFFFFF)
    x = pc.bit_wise_xor(x, pc.shift_right(x, 15))
    x = pc.bit_wise_and(pc.multiply(x, 2_246_822_519), 0xFFFFFFFF)
    x = pc.bit_wise_xor(x, pc.shift_right(x, 13))
    return pc.remainder(x, 100)
