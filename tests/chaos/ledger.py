"""What the clients were told, and the checks a surviving copy must pass.

Every point a trial writes is unique: table ``cpu``, tag ``w`` (the writer), integer
field ``k`` (a key no other point of the trial has) and ``ts = T0 + k`` microseconds
apart. The ledger records what was sent, what was acknowledged (an HTTP 204, an
``ingest`` that exited 0, a ``byrl`` write confirmed) and when, and which keys an
acknowledged delete or expiry removed. :func:`check` then says what is wrong with the
rows a copy holds: a key twice, a key never sent, a deleted key back, or a key the
trial's guarantee requires and the copy lacks."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from engine import ops
from engine.errors import NotFound

DAY_NS = 86_400 * 10**9
STEP_NS = 1_000  # between consecutive keys
# two days ago, so that a retention of a few days keeps them and expires the "old" ones
T0 = (time.time_ns() // DAY_NS - 2) * DAY_NS
OLD_T0 = T0 - 10 * DAY_NS  # written only to be expired


@dataclass
class Ledger:
    sent: dict[int, str] = field(default_factory=dict)  # key -> writer
    acked: dict[int, float] = field(default_factory=dict)  # key -> time.monotonic() of the ack
    deleted: set[int] = field(default_factory=set)  # removed by an acknowledged delete
    maybe_deleted: set[int] = field(default_factory=set)  # by a delete that was not acked
    old_keys: set[int] = field(default_factory=set)
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _acked_more: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._acked_more = threading.Condition(self._lock)

    def batch(self, writer: str, lines: int, *, old: bool = False) -> tuple[list[int], bytes]:
        """The next ``lines`` keys for ``writer``, as a line-protocol body."""
        with self._lock:
            keys = list(range(self._next, self._next + lines))
            self._next += lines
            for k in keys:
                self.sent[k] = writer
            if old:
                self.old_keys.update(keys)
        base = OLD_T0 if old else T0
        body = "".join(f"cpu,w={writer} k={k}i,v={k % 97}.5 {base + k * STEP_NS}\n" for k in keys)
        return keys, body.encode()

    def ack(self, keys: list[int]) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                self.acked[k] = now
            self._acked_more.notify_all()

    def wait_acked(self, count: int, timeout: float) -> bool:
        """Whether at least ``count`` keys were acknowledged within ``timeout`` seconds."""
        with self._lock:
            return self._acked_more.wait_for(lambda: len(self.acked) >= count, timeout)

    def deleting(self, keys: set[int], *, acknowledged: bool) -> None:
        with self._lock:
            (self.deleted if acknowledged else self.maybe_deleted).update(keys)

    def acked_before(self, moment: float) -> set[int]:
        return {k for k, at in self.acked.items() if at < moment}

    def keys_of(self, writer: str) -> list[int]:
        return sorted(k for k, w in self.sent.items() if w == writer)


def rows_of(data_dir: Path, name: str, *, recover: bool = False) -> pa.Table:
    """The ``cpu`` rows of a copy (after a real recovery first when ``recover``)."""
    if recover:
        ops.recover(data_dir, name, dry_run=False)
    try:
        return ops.select(data_dir, name, "cpu")
    except NotFound:  # nothing was ever committed to it
        return pa.table({"w": pa.array([], pa.string()), "k": pa.array([], pa.int64())})


def check(rows: pa.Table, ledger: Ledger, required: set[int], where: str) -> list[str]:
    """What is wrong with ``rows`` (a copy's ``cpu`` table): a list of one-line violations."""
    keys = rows.column("k").to_pylist()
    writers = rows.column("w").to_pylist()
    out: list[str] = []
    counts = pc.value_counts(pa.array(keys, pa.int64())) if keys else None
    if counts is not None:
        twice = [c["values"] for c in counts.to_pylist() if c["counts"] > 1]
        if twice:
            out.append(f"{where}: {len(twice)} keys held more than once, e.g. {twice[:5]}")
    present = set(keys)
    phantom = [k for k, w in zip(keys, writers, strict=True) if ledger.sent.get(k) != w]
    if phantom:
        out.append(f"{where}: {len(phantom)} rows never sent as held, e.g. {phantom[:5]}")
    back = sorted(present & ledger.deleted)
    if back:
        out.append(f"{where}: {len(back)} deleted keys came back, e.g. {back[:5]}")
    missing = sorted(required - present - ledger.deleted - ledger.maybe_deleted)
    if missing:
        out.append(f"{where}: {len(missing)} acknowledged keys missing, e.g. {missing[:5]}")
    return out


def lost_window(ledger: Ledger, present: set[int], moment: float) -> float:
    """How long before ``moment`` the oldest acknowledged key that ``present`` lacks was
    acknowledged (0 when none is lost): the window a failover at ``sync`` lost."""
    gone = ledger.deleted | ledger.maybe_deleted
    ages = [moment - at for k, at in ledger.acked.items() if k not in present and k not in gone]
    return max(ages, default=0.0)


def present_keys(rows: pa.Table) -> set[int]:
    return set(rows.column("k").to_pylist())
