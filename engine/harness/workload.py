"""A deterministic writer for crash tests, and the check of what survived.

Run as a child process (``python -m engine.harness.workload ...``), it writes batches
to a database and prints ``ACK <n>`` on stdout once ``write()`` of batch ``n``
has returned (the wal_level's promise then holds), and ``CKPT <n>`` once a
checkpoint covering batches ``0..n`` has returned. Each batch is one
transaction over two tables (``w_a``, ``w_b``), ``rows`` rows each, keyed so
that no two batches share a key; every row carries its batch number and a
value derived from it, so a reader can tell a complete batch, a half one, a
duplicated one and a wrong value apart.

With ``--delete-every K``, after acknowledging batch ``n`` with ``n % K == K - 1``
the child deletes series ``s1`` of batch ``n - 1`` from ``w_a`` (if that batch was
acknowledged) and prints ``DEL <n - 1>`` once the delete is durable; a delete
acknowledged must hold after the crash, one in flight must be all or nothing.

:func:`verify` reopens the database and compares it with what the child
acknowledged, per the promise of the wal_level (DESIGN.md).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

# Imported here, not deferred as the engine does: the crash simulator kills this child at
# a random moment after READY, which must fall among writes, not among first imports.
import pyarrow.compute as pc
import pyarrow.parquet

from engine.db.database import Batch, Database
from engine.settings import WalLevel
from engine.storage.deletes import DeleteSpec

TABLES = ("w_a", "w_b")
SERIES = 4
BASE_TS = 1_700_000_000_000_000_000


def batch_rows(table: str, batch: int, rows: int) -> pa.Table:
    index = pa.array(range(rows), pa.int64())
    ts = pc.add(pc.multiply(pc.add(pc.multiply(batch, rows), index), 1_000_000_000), BASE_TS)
    return pa.table(
        {
            "ts": ts,
            "series": pa.array([f"s{j % SERIES}" for j in range(rows)], pa.string()),
            "batch": pa.array([batch] * rows, pa.int64()),
            "value": pc.add(pc.multiply(index.cast(pa.float64()), 0.5), float(batch)),
            "table_tag": pa.array([table] * rows, pa.string()),
        }
    )


def make_batch(batch: int, rows: int) -> list[Batch]:
    return [Batch(t, batch_rows(t, batch, rows), ["series"]) for t in TABLES]


DELETED_SERIES = "s1"


def delete_of(batch: int, rows: int) -> DeleteSpec:
    """The workload's delete: series s1 of ``batch`` in the first table."""
    start = BASE_TS + batch * rows * 1_000_000_000
    return DeleteSpec(TABLES[0], start, start + rows * 1_000_000_000, (("series", DELETED_SERIES),))


def is_delete_target(batch: int, delete_every: int) -> bool:
    return delete_every > 0 and batch % delete_every == delete_every - 2


def _ack(kind: str, n: int, lock: threading.Lock) -> None:
    # CLOCK_MONOTONIC is system-wide: the parent compares it with the time of the crash
    with lock:
        sys.stdout.write(f"{kind} {n} {time.monotonic():.6f}\n")
        sys.stdout.flush()


def run_writer(args: argparse.Namespace) -> None:
    db = Database.open(Path(args.db_dir), args.name, background=not args.no_background)
    print(f"READY {db.last_lsn}", flush=True)
    lock = threading.Lock()
    counter = iter(range(args.start, args.start + args.batches))
    counter_lock = threading.Lock()

    stop_file = Path(args.stop_file) if args.stop_file else None

    def next_batch() -> int | None:
        if stop_file is not None and stop_file.exists():
            return None
        with counter_lock:
            return next(counter, None)

    acked: set[int] = set()

    def worker() -> None:
        while (n := next_batch()) is not None:
            db.write(make_batch(n, args.rows))
            with counter_lock:
                acked.add(n)
            _ack("ACK", n, lock)
            if args.delete_every and n % args.delete_every == args.delete_every - 1:
                with counter_lock:
                    target = n - 1 if n - 1 in acked else None
                if target is not None:
                    db.log_delete(delete_of(target, args.rows))
                    _ack("DEL", target, lock)
            if args.checkpoint_every and (n + 1) % args.checkpoint_every == 0:
                with counter_lock:
                    # batches acknowledged before the checkpoint starts are in it; with
                    # several threads only the contiguous prefix of them is claimed
                    through = _contiguous_prefix(acked, args.start)
                db.checkpoint("workload")
                _ack("CKPT", through, lock)

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if args.no_close:
        db.abandon()
    else:
        db.close()
    print("DONE", flush=True)


def _contiguous_prefix(acked: set[int], start: int) -> int:
    n = start
    while n in acked:
        n += 1
    return n - 1


@dataclass
class Acks:
    acked: set[int] = field(default_factory=set)
    checkpointed_through: int = -1
    times: dict[int, float] = field(default_factory=dict)  # batch -> monotonic time of its ACK
    deleted: set[int] = field(default_factory=set)  # batches whose delete was acknowledged

    @classmethod
    def parse(cls, output: str) -> Acks:
        acks = cls()
        for line in output.splitlines():
            kind, _, rest = line.partition(" ")
            value, _, when = rest.partition(" ")
            if not value.isdigit():
                continue
            if kind == "ACK":
                acks.acked.add(int(value))
                if when:
                    acks.times[int(value)] = float(when)
            elif kind == "CKPT":
                acks.checkpointed_through = max(acks.checkpointed_through, int(value))
            elif kind == "DEL":
                acks.deleted.add(int(value))
        return acks


@dataclass
class Verdict:
    ok: bool
    acked: int
    recovered: int
    lost: list[int] = field(default_factory=list)
    partial: list[int] = field(default_factory=list)
    wrong: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def verify(
    db_dir: Path, name: str, acks: Acks, rows: int, level: WalLevel, delete_every: int = 0
) -> Verdict:
    """Compare a reopened database with the acknowledgements, per ``level``'s promise.

    * every batch present is complete in both tables, with the right values,
      and never more than once; a batch a delete targets lacks all of its deleted
      rows or none of them, and all of them if the delete was acknowledged;
    * sync/flush (after a process kill): every acknowledged batch is present;
    * off: every batch covered by an acknowledged checkpoint is present.
    """
    db = Database.open(db_dir, name, readonly=True)
    counts: dict[int, list[int]] = {}
    wrong: set[int] = set()
    for i, table in enumerate(TABLES):
        if table not in db.tables():
            continue
        data = db.scan(table)
        for n, got in _batches_with_rows(data).items():
            counts.setdefault(n, [0] * len(TABLES))[i] = got.num_rows
            if not _values_match(table, n, got, rows):
                wrong.add(n)
    present = set(counts)
    after_delete = [rows - _deleted_rows(rows), rows]

    def whole(n: int, got: list[int]) -> bool:
        if n in acks.deleted:
            return got == after_delete
        if is_delete_target(n, delete_every):
            return got in ([rows] * len(TABLES), after_delete)
        return got == [rows] * len(TABLES)

    partial = sorted(n for n, c in counts.items() if not whole(n, c))
    verdict = Verdict(
        ok=True, acked=len(acks.acked), recovered=len(present), partial=partial, wrong=sorted(wrong)
    )
    if level is WalLevel.OFF:
        must = set(range(0, acks.checkpointed_through + 1)) & acks.acked
    else:
        must = acks.acked
    verdict.lost = sorted(must - present)
    if verdict.lost:
        verdict.problems.append(f"{len(verdict.lost)} acknowledged batch(es) lost")
    if partial:
        verdict.problems.append(f"{len(partial)} batch(es) only partly present")
    if wrong:
        verdict.problems.append(f"{len(wrong)} batch(es) with wrong values")
    verdict.ok = not verdict.problems
    return verdict


def _deleted_rows(rows: int) -> int:
    return sum(1 for j in range(rows) if f"s{j % SERIES}" == DELETED_SERIES)


def _batches_with_rows(data: pa.Table) -> dict[int, pa.Table]:
    if data.num_rows == 0:
        return {}
    out = {}
    batches = data.column("batch")
    for n in pc.unique(batches).to_pylist():
        out[int(n)] = data.filter(pc.equal(batches, n))
    return out


def _values_match(table: str, batch: int, got: pa.Table, rows: int) -> bool:
    expected = batch_rows(table, batch, rows)
    want = {
        ts: v
        for ts, v in zip(
            expected.column("ts").to_pylist(), expected.column("value").to_pylist(), strict=True
        )
    }
    have = got.column("ts").cast(pa.int64()).to_pylist()
    values = got.column("value").to_pylist()
    return len(set(have)) == len(have) and all(
        want.get(ts) == v for ts, v in zip(have, values, strict=True)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("db_dir")
    parser.add_argument("name")
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--delete-every", type=int, default=0)
    parser.add_argument("--no-background", action="store_true")
    parser.add_argument("--no-close", action="store_true", help="exit without the clean close")
    parser.add_argument("--stop-file", help="stop early (cleanly) once this file exists")
    run_writer(parser.parse_args(argv))


if __name__ == "__main__":
    main()
