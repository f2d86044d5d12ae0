"""Group commit: concurrent writers in one process share fsyncs.

A writer whose records end at LSN ``n`` calls :meth:`GroupCommit.wait_durable`.
If no fsync is running it becomes the leader: it notes the last appended LSN,
fsyncs, and marks everything up to that LSN durable, waking every writer it
covered. Writers that arrive while an fsync runs wait for it and, if it did
not cover them, one of them leads the next. Under load one fsync acknowledges
a whole group of batches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class GroupCommit:
    def __init__(self, durable_lsn: int) -> None:
        self._cond = threading.Condition()
        self._syncing = False
        self.durable_lsn = durable_lsn
        self.fsyncs = 0

    def wait_durable(
        self, lsn: int, last_lsn: Callable[[], int], fsync: Callable[[], None]
    ) -> None:
        """Return once every record up to ``lsn`` is fsynced (leading an fsync if needed)."""
        while True:
            with self._cond:
                while self._syncing and self.durable_lsn < lsn:
                    self._cond.wait()
                if self.durable_lsn >= lsn:
                    return
                self._syncing = True
            self._lead(last_lsn(), fsync)

    def sync_all(self, last_lsn: int, fsync: Callable[[], None]) -> None:
        """Fsync now, whatever is durable already (before a WAL file is rotated)."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            self._syncing = True
        self._lead(last_lsn, fsync)

    def _lead(self, target: int, fsync: Callable[[], None]) -> None:
        ok = False
        try:
            fsync()
            ok = True
        finally:
            with self._cond:
                self._syncing = False
                if ok:
                    self.durable_lsn = max(self.durable_lsn, target)
                    self.fsyncs += 1
                self._cond.notify_all()
