"""Every decode of a segment checks what an archive's restore takes on trust from the
manifest: the rows' timestamps lie inside the recorded range (reads, retention and
deletes choose segments by it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest

from engine.errors import Corruption
from engine.storage import segment

T0 = 1_700_000_000_000_000_000


def _rows() -> pa.Table:
    return pa.table(
        {
            "host": pa.array(["a", "a", "b"]),
            "ts": pa.array([T0, T0 + 5, T0 + 1], pa.timestamp("ns", tz="UTC")),
            "v": pa.array([1.0, 2.0, 3.0]),
        }
    )


def test_a_segment_inside_its_range_decodes(tmp_path: Path) -> None:
    info = segment.write(tmp_path, "tables/cpu/p0/000001.parquet", 0, 1, _rows(), ["host"])
    assert (info.min_ts, info.max_ts) == (T0, T0 + 5)
    assert segment.read(tmp_path, info).num_rows == 3


@pytest.mark.parametrize("narrow", [{"min_ts": T0 + 1}, {"max_ts": T0 + 4}])
def test_rows_outside_the_recorded_range_are_corruption(
    tmp_path: Path, narrow: dict[str, int]
) -> None:
    info = segment.write(tmp_path, "tables/cpu/p0/000001.parquet", 0, 1, _rows(), ["host"])
    lying = dataclasses.replace(info, **narrow)
    with pytest.raises(Corruption, match="timestamps run from"):
        segment.read(tmp_path, lying)
