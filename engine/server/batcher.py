"""Writes from many concurrent requests, committed together.

Each database served has one :class:`Batcher`. A request hands it a body of line
protocol and waits for its :class:`WriteResult`. A few worker threads each take
every request waiting (up to ``group_bytes``), parse them as one block and
commit the good points of all of them as one transaction: one WAL record per
table, one commit record, and at ``sync`` one fsync, which the database's group
commit shares further between workers. The per-commit work (parsing, encoding,
the memtable) is paid once per group, not once per request, so concurrent
requests at ``sync`` cost little more than at ``flush``.

Guarantees:

- a request is answered only after the transaction holding its points returned,
  so at ``sync`` what was acknowledged is on disk;
- a transaction is all or nothing: a crash keeps every request of a group or none;
- a refused line refuses that line only (InfluxDB's partial write); the request's
  other lines are written and the request is told which lines were refused;
- a later request never loses to an earlier one: groups are taken in arrival order
  and a request acknowledged before another was sent is in an earlier transaction;
- at ``byrl`` a request is answered only once every replica store holds its
  transaction. The worker does not wait for that: it hands the group to a
  confirming thread and commits the next group, so the next shipping round takes
  every group committed during this one (the ship rounds and the commits overlap,
  as the WAL fsyncs of several workers do).

Bodies are parsed together only while no point's string spans lines: a string
left open at the end of one body must not swallow the next body's lines. A
group where one does is parsed body by body.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from engine.db.database import Database
from engine.errors import BadInput, InvalidArgument, SchemaConflict
from engine.ingest.committer import Committer
from engine.ingest.pipeline import (
    FieldKinds,
    IngestOptions,
    IngestReport,
    LineProtocolReader,
    Refused,
    Rejects,
    Run,
    reason_kind,
)
from engine.settings import WalLevel

SOURCE = "request"
GROUP_BYTES = 8 << 20
WORKERS = 2
CONFIRMING = 16  # groups awaiting the replica stores at once (threads that only wait)


@dataclass(frozen=True)
class WriteResult:
    """What became of one request: its refused lines (numbered within its body)."""

    refused: list[Refused]


@dataclass(frozen=True)
class GroupStats:
    """One committed group, for the metrics."""

    requests: int
    rows: int
    refused: int
    bytes: int
    refused_reasons: dict[str, int]  # refused lines per kind of reason
    seconds: float  # from the group's taking to its commit returning


@dataclass
class _Request:
    body: bytes
    precision: str
    future: Future[WriteResult] = field(default_factory=Future)
    refused: list[Refused] = field(default_factory=list)


class _Collected(Rejects):
    """Refused lines kept in memory, in the order they were refused."""

    def __init__(self) -> None:
        super().__init__(None)
        self.items: list[Refused] = []

    def write(self, refused: Refused) -> None:
        self.items.append(refused)


class Batcher:
    def __init__(
        self,
        db: Database,
        *,
        workers: int = WORKERS,
        group_bytes: int = GROUP_BYTES,
        on_commit: Callable[[GroupStats], None] | None = None,
    ) -> None:
        self.db = db
        self.group_bytes = group_bytes
        self.on_commit = on_commit
        self._queue: deque[_Request] = deque()
        self.queued_bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._confirming = ThreadPoolExecutor(
            CONFIRMING, thread_name_prefix=f"tsadmin-confirm-{db.name}"
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"tsadmin-commit-{db.name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, body: bytes, precision: str) -> Future[WriteResult]:
        """Queue ``body`` (line protocol, timestamps in ``precision``) for the next group."""
        request = _Request(body, precision)
        with self._cond:
            if self._closing:
                raise InvalidArgument(f"database {self.db.name} is no longer taking writes")
            self._queue.append(request)
            self.queued_bytes += len(body)
            self._cond.notify()
        return request.future

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def commit_waiting(self) -> None:
        """Commit the requests waiting now as one group, in this thread (a batcher made
        with no workers is driven this way: the tests group requests at will)."""
        with self._cond:
            group = list(self._queue)
            self._queue.clear()
            self.queued_bytes = 0
        if group:
            self._commit_group(group)

    def close(self) -> None:
        """Stop taking requests; the workers commit every one queued, then end."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        self._confirming.shutdown(wait=True)

    # -- workers -----------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            group = self._take()
            if not group:
                return
            self._commit_group(group)

    def _take(self) -> list[_Request]:
        """Every request waiting, up to ``group_bytes`` (at least one); [] once closed
        and drained."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            group: list[_Request] = []
            size, limit = 0, self.group_bytes
            while self._queue and (not group or size + len(self._queue[0].body) <= limit):
                request = self._queue.popleft()
                group.append(request)
                size += len(request.body)
            self.queued_bytes -= size
            return group

    def _commit_group(self, group: list[_Request]) -> None:
        started = time.perf_counter()
        try:
            rows, lsn = self._parse_and_commit(group)
        except (BadInput, SchemaConflict, InvalidArgument) as exc:
            if len(group) > 1:
                # one request's rows clash with another's: alone, only the culprit fails
                for request in group:
                    self._commit_group([request])
                return
            group[0].future.set_exception(exc)
            return
        except Exception as exc:  # disk full, fenced...; or a bug: never the worker's end
            for request in group:
                request.future.set_exception(exc)
            return
        if rows and self.db.settings.wal_level is WalLevel.BYRL:
            self._confirming.submit(self._answer_once_replicated, group, rows, lsn, started)
        else:
            self._answer(group, rows, started)

    def _answer_once_replicated(
        self, group: list[_Request], rows: int, lsn: int, started: float
    ) -> None:
        try:
            self.db.wait_replicas(lsn)
        except Exception as exc:  # not acknowledged: a timeout, a fence; or a bug
            for request in group:
                request.future.set_exception(exc)
            return
        self._answer(group, rows, started)

    def _answer(self, group: list[_Request], rows: int, started: float) -> None:
        if self.on_commit is not None:  # counted before answering: a client that reads
            # the metrics after its answer finds its own request in them
            self.on_commit(
                GroupStats(
                    requests=len(group),
                    rows=rows,
                    refused=sum(len(r.refused) for r in group),
                    refused_reasons=dict(
                        Counter(reason_kind(x.reason) for r in group for x in r.refused)
                    ),
                    bytes=sum(len(r.body) for r in group),
                    seconds=time.perf_counter() - started,
                )
            )
        for request in group:
            request.future.set_result(WriteResult(request.refused))

    def _parse_and_commit(self, group: list[_Request]) -> tuple[int, int]:
        """Parse the group's bodies and commit their good points as one transaction;
        each request's refused lines are set on it. Returns the rows committed and the
        commit's LSN (at byrl not yet in the replica stores)."""
        attempt = _Attempt(self.db)
        if not attempt.parse_together(group):
            attempt = _Attempt(self.db)
            attempt.parse_each(group)
        return attempt.commit()


class _Attempt:
    """One try at parsing a group: its committer, field kinds and refused lines."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.options = IngestOptions(batch_rows=2**62, on_error="skip", flush_interval=math.inf)
        self.report = IngestReport(database=db.name, source=SOURCE)
        self.committer = Committer(
            db, self.report, self.options, count_overwrites=False, confirm_replicas=False
        )
        self.kinds = FieldKinds(db, SOURCE)

    def _reader(self, precision: str, rejects: _Collected) -> LineProtocolReader:
        options = IngestOptions(
            batch_rows=self.options.batch_rows,
            on_error="skip",
            flush_interval=math.inf,
            precision=precision,
        )
        run = Run(self.db, SOURCE, options, self.report, self.committer, rejects)
        return LineProtocolReader(run, self.kinds)

    def parse_together(self, group: list[_Request]) -> bool:
        """Parse the bodies of each precision as one block; False if a point's string
        spans lines (then nothing of this attempt may be used)."""
        for request in group:
            request.refused = []
        by_precision: dict[str, list[_Request]] = {}
        for request in group:
            by_precision.setdefault(request.precision, []).append(request)
        for precision, requests in by_precision.items():
            rejects = _Collected()
            reader = self._reader(precision, rejects)
            starts, parts, line = [], [], 1
            for request in requests:
                body = request.body if request.body.endswith(b"\n") else request.body + b"\n"
                starts.append(line)
                parts.append(body)
                line += body.count(b"\n")
            reader.feed(b"".join(parts), 1)
            if reader.spans_lines:
                return False
            reader.finish(commit=False)
            for refused in rejects.items:
                at = bisect.bisect_right(starts, refused.line) - 1
                requests[at].refused.append(_renumbered(refused, starts[at]))
        return True

    def parse_each(self, group: list[_Request]) -> None:
        """Parse every body on its own (a string left open ends with its body)."""
        for request in group:
            rejects = _Collected()
            reader = self._reader(request.precision, rejects)
            reader.feed(request.body, 1)
            reader.finish(commit=False)
            request.refused = rejects.items

    def commit(self) -> tuple[int, int]:
        rows = self.committer.pending_rows
        self.committer.commit()
        return rows, self.committer.last_lsn


def _renumbered(refused: Refused, first_line: int) -> Refused:
    """``refused`` numbered within its own body, which started at ``first_line``."""
    line = refused.line - first_line + 1
    where = f"{SOURCE}:{line}" + (f":{refused.column}" if refused.column else "")
    return Refused(line, refused.column, refused.reason, refused.text, where)
