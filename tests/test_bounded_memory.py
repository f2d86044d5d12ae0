"""The merged scan holds a bounded number of rows, whatever the table's size: a table
of 20 overlapping segments in 5 partitions, 200,000 rows, read 1,000 rows at a time by
``select``'s scan and by ``db checksum``'s digest, never holds more than two batches
per segment decoded (the engine's own count, not a time), and gives the same rows and
digest as a read with the default batch."""

from __future__ import annotations

import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from engine import Database
from engine.db.database import Batch
from engine.storage.checksum import table_digest
from tests.conftest import new_db

T0 = 1_700_000_000 * 10**9 // (3600 * 10**9) * 3600 * 10**9
HOSTS = 50
PER_WRITE = 50_000
BATCH = 1_000


def test_select_and_checksum_hold_a_bounded_number_of_rows(data_dir: Path) -> None:
    db_dir = new_db(data_dir, "big", partition="1h")
    with Database.open(db_dir, "big", background=False) as db:
        for write in range(4):  # each write spans all 5 hours: 5 segments per checkpoint
            n = pa.array(range(PER_WRITE), pa.int64())
            step = 5 * 3600 * 10**9 // PER_WRITE  # 0.36 s: 50,000 rows over 5 hours
            rows = pa.table(
                {
                    "ts": pc.add(pc.multiply(n, step), T0 + write),
                    "host": pc.cast(pc.bit_wise_and(n, 63), pa.string()),
                    "v": pc.cast(n, pa.float64()),
                }
            )
            db.write([Batch("cpu", rows, ["host"])])
            db.checkpoint("test")
        segments = len(db.view().manifest.tables["cpu"].segments)
        assert segments == 20

        counts: list[int] = []
        small = list(db.scan_batches("cpu", batch_rows=BATCH, held=counts.append))
        whole = db.scan("cpu")
        assert whole.num_rows == 4 * PER_WRITE
        assert pa.concat_tables(small).equals(whole)
        assert max(b.num_rows for b in small) <= BATCH
        bound = 2 * segments * BATCH  # a batch per segment, and a round's output
        assert counts and max(counts) <= bound < whole.num_rows / 4, max(counts)

        counts.clear()
        scan = functools.partial(db.scan_batches, "cpu", batch_rows=BATCH, held=counts.append)
        schema = db.schema("cpu")
        streamed = table_digest("cpu", scan, schema)
        assert streamed == table_digest("cpu", functools.partial(db.scan_batches, "cpu"), schema)
        assert streamed.rows == whole.num_rows
        assert max(counts) <= bound
