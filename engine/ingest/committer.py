"""Gathered rows to transactions: one per batch, all tables of the batch together.

A pipelined committer commits a batch on a thread of its own while the caller parses
the next one: the WAL record's encoding, the write and the fsync release the GIL, and
so does the native parser, so the two use both cores. At most one batch is in flight,
and the next commit waits for it first, so batches commit in their order and a
failure stops the ingest at the batch that failed, as a commit in line would. What
is reported committed (``report.rows``) is only what finished commits wrote, each
held as the database's wal_level promises.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from engine.arrowmods import pa
from engine.db.database import Batch, Database
from engine.errors import BadInput, InvalidArgument


class _Options(Protocol):
    batch_rows: int
    flush_interval: float


class _Report(Protocol):
    """What a commit counts (the ingest report)."""

    rows: int
    overwritten: int
    batches: int


class Committer:
    """Gathers rows per table and commits them as one transaction per batch; with
    ``pipelined``, each commit runs on a thread while the caller goes on (see above)."""

    def __init__(
        self,
        db: Database,
        report: _Report,
        options: _Options,
        *,
        count_overwrites: bool = True,
        confirm_replicas: bool = True,
        pipelined: bool = False,
    ) -> None:
        self.db = db
        self.report = report
        self.options = options
        self.count_overwrites = count_overwrites
        self.confirm_replicas = confirm_replicas
        self.last_lsn = 0  # of the last finished commit
        self.pending: list[Batch] = []
        self.pending_rows = 0
        self.last_commit = time.monotonic()
        self.tables: set[str] = set()
        self._worker = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-commit")
            if pipelined
            else None
        )
        self._in_flight: Future[None] | None = None

    def add(self, batch: Batch) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.rows.num_rows
        self.tables.add(batch.table)

    def due(self) -> bool:
        return self.pending_rows >= self.options.batch_rows or (
            self.pending_rows > 0
            and time.monotonic() - self.last_commit >= self.options.flush_interval
        )

    def commit(self) -> None:
        """Commit what is gathered: now, or (pipelined) on the commit thread once the
        commit before it has finished; that one's failure is raised here."""
        self.wait()
        if self.pending:
            batches, rows = self.pending, self.pending_rows
            if self._worker is None:
                self._write(batches, rows)
            else:
                self._in_flight = self._worker.submit(self._write, batches, rows)
        self.pending, self.pending_rows = [], 0
        self.last_commit = time.monotonic()

    def wait(self) -> None:
        """Return once no commit is in flight; raise its failure if it failed."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def close(self) -> None:
        """Wait for the commit in flight (its failure raised) and stop the thread."""
        try:
            self.wait()
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=True)

    def _write(self, batches: list[Batch], rows: int) -> None:
        try:
            result = self.db.write(
                _one_per_table(batches),
                count_overwrites=self.count_overwrites,
                confirm_replicas=self.confirm_replicas,
            )
        except InvalidArgument as exc:  # a name or a value the data carries
            raise BadInput(exc.message, exc.hint) from exc
        self.report.rows += rows
        self.report.overwritten += result.overwritten
        self.report.batches += 1
        self.last_lsn = result.lsn


def _one_per_table(batches: list[Batch]) -> list[Batch]:
    """The pieces of each table as one batch (in order: a later row still wins), so a
    transaction logs one record and checks its keys once per table."""
    by_table: dict[str, list[Batch]] = {}
    for batch in batches:
        by_table.setdefault(batch.table, []).append(batch)
    merged = []
    for table, pieces in by_table.items():
        if len(pieces) == 1:
            merged.append(pieces[0])
            continue
        rows = pa.concat_tables([p.rows for p in pieces], promote_options="default")
        tags = list(dict.fromkeys(tag for p in pieces for tag in p.tags))
        merged.append(Batch(table, rows, tags))
    return merged
