"""A writer for the soak test: several threads commit small batches while checkpoints,
compactions and the WAL flusher run as often as they can, under a slow fsync injected
through the I/O layer. Prints ``commits N`` about every half second and ``done N`` at
the end; SIGUSR1 dumps every thread's stack to stderr (the test's watchdog asks for it).

Usage: python tests/soak_child.py DATA_DIR SECONDS WAL_LEVEL
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa

from engine import Batch, Database, Settings, create_database
from engine.io.fileio import IO


def main() -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    data_dir, seconds, level = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    settings = Settings.build(wal_level=level, wal_fsync_period=1, checkpoint_interval="1s")
    db_dir = create_database(data_dir, "soak", settings)
    IO.faults.slow_fsync_ms = 1.0
    db = Database.open(db_dir, "soak")
    deadline = time.monotonic() + seconds
    commits = [0]
    lock = threading.Lock()

    def writer(worker: int) -> None:
        n = 0
        while time.monotonic() < deadline:
            ts = pa.array([worker * 10**12 + n * 1000 + i for i in range(20)], pa.int64())
            rows = pa.table({"ts": ts, "host": [f"h{worker}"] * 20, "v": [float(n)] * 20})
            db.write([Batch("cpu", rows, ["host"])])
            n += 1
            with lock:
                commits[0] += 1

    def checkpointer() -> None:
        while time.monotonic() < deadline:
            db.checkpoint("soak")
            db.compact(min_segments=4)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=checkpointer))
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        time.sleep(0.5)
        print(f"commits {commits[0]}", flush=True)
    db.close()
    print(f"done {commits[0]}", flush=True)


if __name__ == "__main__":
    main()
