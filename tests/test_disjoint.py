"""Whether a partition's segments share a key, read from where their ranges meet
(engine/storage/disjoint.py): what lets a backup copy segments as they are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pytest

from engine import Batch, Database
from engine.storage import disjoint
from engine.storage.manifest import SegmentInfo
from tests.conftest import new_db


def _rows(host: str, instants: range, value: float) -> list[Batch]:
    ts = pa.array(list(instants), pa.timestamp("ns"))
    rows = pa.table({"ts": ts, "host": [host] * len(ts), "v": [value] * len(ts)})
    return [Batch("cpu", rows, ["host"])]


def _opened(db_dir: Path) -> Callable[[SegmentInfo], BinaryIO]:
    def opened(info: SegmentInfo) -> BinaryIO:
        return (db_dir / info.file).open("rb")

    return opened


def test_segments_meeting_on_other_series_share_no_key_within_the_budget(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_dir = new_db(data_dir, "d")
    db = Database.open(db_dir, "d", background=False)
    try:
        # two segments over the same ten instants, of two hosts: 20 rows where they meet
        for host in ("a", "b"):
            db.write(_rows(host, range(10), 1.0))
            db.checkpoint()
        infos = db.view().manifest.tables["cpu"].segments
        assert len(infos) == 2
        opened = _opened(db_dir)
        assert disjoint.no_shared_key(db_dir, infos, ["host"], opened)
        monkeypatch.setattr(disjoint, "OVERLAP_ROWS", 19)  # one row short: left to a merge
        assert not disjoint.no_shared_key(db_dir, infos, ["host"], opened)
        monkeypatch.setattr(disjoint, "OVERLAP_ROWS", 20)
        assert disjoint.no_shared_key(db_dir, infos, ["host"], opened)
        # a third segment rewrites one point of host a: a key in two segments
        db.write(_rows("a", range(5, 6), 2.0))
        db.checkpoint()
        infos = db.view().manifest.tables["cpu"].segments
        assert len(infos) == 3
        monkeypatch.setattr(disjoint, "OVERLAP_ROWS", 1 << 18)
        assert not disjoint.no_shared_key(db_dir, infos, ["host"], opened)
    finally:
        db.close()
