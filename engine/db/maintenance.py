"""A writing database's background work: interval and size checkpoints, compaction,
the ``flush`` level's periodic fsync, and the start-up sweep of orphaned segments.

Two threads per open database. Each catches every exception: an engine error (a full
disk) and a bug alike are kept in ``Core.background_error``, which the next write,
the close and ``Database.problem`` (what ``/health`` shows) report, so a failure
never ends checkpointing in silence. Without threads (``background=False``: tools
that open, do one thing and close) the write path checkpoints inline when a trigger
fires.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine import names
from engine.db.checkpointing import COMPACT_TRIGGER, Checkpoints
from engine.db.core import Core
from engine.errors import BackgroundBug, EngineError
from engine.io.fileio import IO
from engine.log import wal
from engine.settings import WalLevel

# Checkpoint triggers besides the interval; tests and benchmarks may lower them.
WAL_MAX_BYTES = 64 * 1024 * 1024
MEMTABLE_MAX_BYTES = 64 * 1024 * 1024


class Maintenance:
    def __init__(self, core: Core, checkpoints: Checkpoints) -> None:
        self.core = core
        self.checkpoints = checkpoints
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._requested = False

    def start(self) -> None:
        self.core.background = True
        self._spawn(self._checkpoint_loop, "tsadmin-maintenance")
        self._spawn(self._flush_loop, "tsadmin-wal-flusher")

    def stop(self) -> None:
        self._stop.set()
        self.core.wake.set()
        for thread in self._threads:
            thread.join()

    def request_checkpoint(self) -> None:
        """Ask for a checkpoint soon, whatever the triggers say (a server whose memory
        ceiling is below them)."""
        self._requested = True
        self.core.wake.set()

    def after_write(self) -> None:
        """Checkpoint now if memory is far over its limit (or nobody else will), else
        wake the thread when a trigger fires."""
        pending = self.core.pending_bytes
        if pending > 2 * MEMTABLE_MAX_BYTES or (not self._threads and self.needs_checkpoint()):
            self.checkpoints.checkpoint("memory" if pending > MEMTABLE_MAX_BYTES else "wal size")
        elif self.needs_checkpoint():
            self.core.wake.set()

    def needs_checkpoint(self) -> bool:
        core = self.core
        assert core.wal is not None
        if core.memtable.nbytes > MEMTABLE_MAX_BYTES:
            return True
        # while a replica holds checkpoint.wal the WAL cannot rotate: its size is no reason
        held = bool(core.settings.replicas) and (core.dir / wal.WAL_DIR / wal.CHECKPOINT).exists()
        return core.wal.size > WAL_MAX_BYTES and not held

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _checkpoint_loop(self) -> None:
        core = self.core
        while not self._stop.is_set():
            core.wake.wait(timeout=1.0)
            core.wake.clear()
            if self._stop.is_set():
                return
            try:
                self._one_round()
            except EngineError as exc:
                core.background_error = exc  # the next checkpoint retries; close reports it
            except Exception as exc:  # a bug: said by the next write and the close, never lost
                core.background_error = BackgroundBug.of("checkpoint", exc)

    def _one_round(self) -> None:
        interval = self.core.settings.checkpoint_interval_ns / 1e9
        due = time.monotonic() - self.checkpoints.last_at >= interval
        requested, self._requested = self._requested, False
        if due or requested or self.needs_checkpoint():
            self.checkpoints.checkpoint("interval" if due else "requested" if requested else "size")
        if self.checkpoints.compaction_due():
            self.checkpoints.compact(min_segments=COMPACT_TRIGGER + 1)

    def _flush_loop(self) -> None:
        core = self.core
        while not self._stop.wait(timeout=core.settings.wal_fsync_period_ms / 1000 or 0.05):
            if (
                core.settings.wal_level is WalLevel.FLUSH
                and core.commit.durable_lsn < core.last_lsn
            ):
                try:
                    core.wait_durable(core.last_lsn)
                except EngineError as exc:
                    core.background_error = exc
                    return
                except Exception as exc:  # a bug: reported, as a failed fsync is
                    core.background_error = BackgroundBug.of("WAL flush", exc)
                    return


def remove_orphans(core: Core) -> None:
    """Delete segment files no manifest lists (a crash between a write and its install),
    then the directories that leaves empty. One walk with the directory entries' own
    types (no stat per file): it runs at every writer's open."""
    live = core.manifest.segment_files()
    tables_dir = core.dir / names.TABLES_DIR
    orphans: list[Path] = []
    emptied: dict[Path, None] = {}  # deepest first, as the walk goes bottom-up
    for root, dirs, files in os.walk(tables_dir, topdown=False):
        here = Path(root)
        relative = here.relative_to(core.dir)
        stray = [here / f for f in files if str(relative / f) not in live]
        orphans += stray
        left = len(files) - len(stray) + sum(here / d not in emptied for d in dirs)
        if here != tables_dir and not left:
            emptied[here] = None
    IO.remove_many(orphans)
    for directory in emptied:
        IO.remove_tree(directory)
