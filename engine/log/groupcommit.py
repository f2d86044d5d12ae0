"""Group commit: concurrent writers in one process share fsyncs.

A writer whose records end at LSN ``n`` calls :meth:`GroupCommit.wait_durable`.
If no fsync is running it becomes the leader: it notes the last appended LSN,
fsyncs, and marks everything up to that LSN durable, waking every writer it
covered. Writers that arrive while an fsync runs wait for it and, if it did
not cover them, one of them leads the next. Under load one fsync acknowledges
a whole group of batches.

Lock order (``engine/db/database.py`` documents the whole chain): the *sync
token* (``_syncing``) is the innermost lock of the write path. Whoever holds
it runs only the fsync (and, in :meth:`exclusive`, the WAL file swap) and
never waits for the database's write or checkpoint lock, so a thread holding
those may always wait for the token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class GroupCommit:
    def __init__(self, durable_lsn: int) -> None:
        self._cond = threading.Condition()
        self._syncing = False
        self.durable_lsn = durable_lsn
        self.fsyncs = 0
        self.last_fsync_at = time.monotonic()

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

    def exclusive(self, last_lsn: int, fsync: Callable[[], None], then: Callable[[], None]) -> None:
        """Fsync everything up to ``last_lsn``, then run ``then`` before any other fsync
        starts (the WAL file is swapped there, so no leader ever fsyncs a closed file)."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            self._syncing = True
        try:
            fsync()
            self._mark_durable(last_lsn)
            then()
        finally:
            self._release()

    def _lead(self, target: int, fsync: Callable[[], None]) -> None:
        try:
            fsync()
            self._mark_durable(target)
        finally:
            self._release()

    def _mark_durable(self, lsn: int) -> None:
        with self._cond:
            self.durable_lsn = max(self.durable_lsn, lsn)
            self.fsyncs += 1
            self.last_fsync_at = time.monotonic()

    def _release(self) -> None:
        with self._cond:
            self._syncing = False
            self._cond.notify_all()
