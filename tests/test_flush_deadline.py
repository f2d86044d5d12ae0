"""wal_level flush: "all but the last period" holds without the flusher thread's help.

A writer that finds the last fsync a whole period old syncs before it acknowledges, so
a flusher starved of CPU (here: not running at all) cannot stretch the promise."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from engine import Batch, Database
from tests.conftest import new_db

T0 = 1_700_000_000_000_000_000


def _batch(n: int) -> list[Batch]:
    return [Batch("cpu", pa.table({"ts": pa.array([T0 + n], pa.int64()), "v": [float(n)]}), [])]


def test_a_write_after_a_whole_period_fsyncs_before_it_is_acknowledged(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "m", wal_level="flush", wal_fsync_period=200)
    db = Database.open(db_dir, "m", background=False)  # no flusher thread at all
    try:
        db.write(_batch(0))
        time.sleep(0.25)  # the last fsync (at open) is now more than a period old
        first = db.fsync_count
        late = db.write(_batch(1))
        assert late.durable and db.fsync_count == first + 1
        quick = db.write(_batch(2))  # within the period of that fsync: no new one
        assert not quick.durable and db.fsync_count == first + 1
    finally:
        db.close()
