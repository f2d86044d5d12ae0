"""Make the golden files of tests/test_golden.py: a small database (segments, and
committed records still in its WAL) and a full archive of it, written by whichever
tsadmin is on PYTHONPATH.

Run it once per format version, with the code that writes that version:

    PYTHONPATH=/path/to/that/checkout python tests/testdata/make_golden.py OUT_DIR

Everything in it is deterministic but the archive's creation time and tool version.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow as pa

from engine import Batch, Database, Settings, create_database, ops
from engine.archive.backup import BackupOptions, create_backup

T0 = 1_700_000_000_000_000_000
HOUR = 3_600_000_000_000


def rows(start: int, count: int, scale: float) -> pa.Table:
    return pa.table(
        {
            "ts": pa.array([T0 + (start + i) * HOUR for i in range(count)], pa.int64()),
            "host": [f"h{i % 3}" for i in range(count)],
            "usage": [i * scale for i in range(count)],
            "n": pa.array(list(range(count)), pa.int64()),
        }
    )


def main() -> None:
    out = Path(sys.argv[1])
    shutil.rmtree(out, ignore_errors=True)
    data = out / "data"
    db_dir = create_database(data, "golden", Settings.build(precision="ns"))
    with Database.open(db_dir, "golden", background=False) as db:
        db.write([Batch("cpu", rows(0, 40, 0.5), ["host"])])
    db = Database.open(db_dir, "golden", background=False)
    db.write([Batch("cpu", rows(30, 20, 2.0), ["host"])])  # upserts over segment rows
    db.write([Batch("mem", rows(0, 5, 1.0).drop_columns(["usage"]), ["host"])])
    if hasattr(db, "log_delete"):  # 0.4: a DELETE record (WAL version 3)
        from engine.storage.deletes import DeleteSpec

        db.log_delete(DeleteSpec("cpu", T0 + 5 * HOUR, T0 + 35 * HOUR, (("host", "h1"),)))
    db.abandon()  # these stay in the WAL only
    create_backup(data, "golden", BackupOptions(to=str(out / "store"), name="full"))
    expected = ops.database_checksum(data, "golden")
    text = json.dumps(expected.to_json(), indent=1, sort_keys=True)
    (out / "expected.json").write_text(text + "\n")
    (db_dir / "LOCK").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
