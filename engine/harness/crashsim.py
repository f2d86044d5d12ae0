"""``crash simulate``: crash real writer processes and hold recovery to the wal_level's promise.

Each trial creates a scratch database with the settings of the database under
test (whose own data is never touched) but its retention and its replica
stores: the workload writes fixed timestamps that a retention period would
refuse, and a scratch copy must never ship to the database's replicas (a
``byrl`` database is tried at ``sync``, the local half of its promise). It
starts a writer child
(``engine.harness.workload``) that acknowledges batches on stdout, crashes it as the
mode says, reopens the database, and compares acknowledged with recovered
data against DESIGN.md's table:

``kill``        SIGKILL at a random moment after the first acknowledged batch.
``power-loss``  SIGKILL, then every byte not fsynced is dropped (the I/O
                layer's journal): ``sync`` keeps all acknowledged batches,
                ``flush`` all but those of the last ``wal_fsync_period``.
``torn-write``  a random WAL write (a segment write under ``off``) is cut in
                half and the process dies at once.
``bitflip``     after a kill, random bits of the WAL or of a segment file are
                flipped: the damage must be reported (``wal verify`` or
                ``db verify`` fails, or the open or a read refuses);
                silently wrong or missing data is a broken promise.
``checkpoint``  the child dies at a random step of a checkpoint.

In every mode the workload also deletes rows (a series of an earlier batch, every
``DELETE_EVERY`` batches), so every mode covers deletes: an acknowledged delete
must hold after recovery, one in flight must be all or nothing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.db import dbverify, walcheck
from engine.db.database import Database
from engine.db.datadir import create_database, existing_database_dir
from engine.errors import Corruption, EngineError, InvalidArgument
from engine.harness import workload
from engine.harness.children import Child, start_workload
from engine.io.fileio import FAULTS_ENV, IO, simulate_power_loss
from engine.settings import Settings, WalLevel
from engine.storage import manifest as manifest_format

MODES = ("kill", "power-loss", "torn-write", "bitflip", "checkpoint")
CHECKPOINT_STEPS = (
    "checkpoint.after_rename",
    "checkpoint.after_rotate",
    "checkpoint.after_segments",
    "checkpoint.after_manifest",
    "checkpoint.after_wal_delete",
)
SCRATCH_NAME = "crashsim"
DELETE_EVERY = 4
# At flush, a batch acknowledged more than the fsync period plus this margin before the
# power cut must survive it (the margin covers the flusher's and the writers' scheduling).
FLUSH_WINDOW_MARGIN = 0.25


@dataclass
class SimOptions:
    mode: str
    trials: int = 10
    seed: int = 0
    rows: int = 100_000  # rows per trial's writer, at most (it is killed before, usually)
    batch_rows: int = 50

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidArgument(
                f"unknown fault {self.mode!r}", hint=f"use one of {', '.join(MODES)}"
            )
        if self.trials < 1 or self.batch_rows < 1 or self.rows < self.batch_rows:
            raise InvalidArgument(
                "trials, rows and batch rows must be positive, rows at least batch rows"
            )


@dataclass
class Trial:
    trial: int
    mode: str
    wal_level: str
    acked: int
    recovered: int
    lost: int
    verdict: str  # ok | detected | BROKEN | inconclusive (nothing acknowledged to check)
    detail: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SimReport:
    database: str
    mode: str
    wal_level: str
    seed: int
    trials: list[Trial] = field(default_factory=list)

    @property
    def broken(self) -> int:
        return sum(1 for t in self.trials if t.verdict == "BROKEN")

    @property
    def tested(self) -> int:
        """Trials that checked something: acknowledged data, or damage to detect."""
        return sum(1 for t in self.trials if t.verdict != "inconclusive")

    @property
    def ok(self) -> bool:
        """No promise broken, and at least one trial really tested one."""
        return self.broken == 0 and self.tested > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "mode": self.mode,
            "wal_level": self.wal_level,
            "seed": self.seed,
            "ok": self.ok,
            "broken": self.broken,
            "tested": self.tested,
            "inconclusive": len(self.trials) - self.tested,
            "trials": [t.to_json() for t in self.trials],
        }


def simulate(data_dir: Path, name: str, options: SimOptions, progress: Any = None) -> SimReport:
    """Run ``options.trials`` crash trials with the settings of database ``name`` (but
    its retention and replicas: see the module docstring)."""
    settings = Database.open(existing_database_dir(data_dir, name), name, readonly=True).settings
    settings = replace(settings.detached(), retention_ns=0)
    report = SimReport(name, options.mode, settings.wal_level.label, options.seed)
    scratch_root = Path(tempfile.mkdtemp(prefix=".crashsim-", dir=data_dir))
    try:
        for n in range(options.trials):
            # one generator per trial: a trial's draws (what to flip, when to kill) must
            # not depend on how long the trials before it ran, or a seed would not rerun it
            rng = random.Random(f"{options.seed}:{n}")
            report.trials.append(_trial(scratch_root / f"t{n}", n, settings, options, rng))
            IO.remove_tree(scratch_root / f"t{n}")
            if progress:
                progress(n + 1, options.trials)
    finally:
        IO.remove_tree(scratch_root)
    return report


def _trial(
    root: Path, n: int, settings: Settings, options: SimOptions, rng: random.Random
) -> Trial:
    started = time.perf_counter()
    IO.mkdirs(root)
    db_dir = create_database(root, SCRATCH_NAME, settings)
    journal = root / "journal"
    faults = _faults_for(options.mode, settings, rng, journal)
    flip_target = rng.choice(["wal", "segment"]) if options.mode == "bitflip" else ""
    # a WAL flip wants records in the WAL to damage, a segment flip wants segments
    checkpoint_every = {"checkpoint": rng.choice([2, 3, 4]), "bitflip": 0}.get(
        options.mode, rng.choice([0, 5, 13])
    )
    if flip_target == "segment":
        checkpoint_every = rng.choice([2, 3])
    child = _start(db_dir, options, faults, checkpoint_every)
    # At flush, power loss may take the last fsync period: a trial must run longer than
    # that, or it would hold no acknowledged batch old enough to check.
    hold = 0.0
    if options.mode == "power-loss" and settings.wal_level is WalLevel.FLUSH:
        hold = settings.wal_fsync_period_ms / 1000 + FLUSH_WINDOW_MARGIN
    # The kill waits for the first acknowledged batch (a segment flip: the first
    # checkpoint), not only for READY: a trial killed before any acknowledgement proves
    # nothing, and on a loaded machine the first commit can take longer than the delay.
    after = "CKPT" if flip_target == "segment" else "ACK"
    output, killed_at = _crash(child, options.mode, rng, hold, after)
    acks = workload.Acks.parse(output)
    detail = ""
    if options.mode == "power-loss":
        dropped = simulate_power_loss(journal, db_dir)
        detail = f"{sum(dropped.values())} unsynced bytes dropped"
    if options.mode == "bitflip":
        outcome = _flip_and_check(db_dir, rng, flip_target)
        detail = f"no {flip_target} to flip" if outcome is None else ""
        if outcome is not None:
            return Trial(
                n,
                options.mode,
                settings.wal_level.label,
                len(acks.acked),
                0,
                0,
                "detected",
                outcome,
                time.perf_counter() - started,
            )
    verdict = _judge(db_dir, acks, options, settings, killed_at)
    return Trial(
        n,
        options.mode,
        settings.wal_level.label,
        verdict.acked,
        verdict.recovered,
        len(verdict.lost),
        ("ok" if verdict.acked else "inconclusive") if verdict.ok else "BROKEN",
        "; ".join(verdict.problems) or detail,
        time.perf_counter() - started,
    )


def _faults_for(mode: str, settings: Settings, rng: random.Random, journal: Path) -> str:
    inherited = os.environ.get(FAULTS_ENV, "")  # lets a test plant a bug (e.g. nofsync)
    own = ""
    if mode == "power-loss":
        own = f"journal={journal}"
    elif mode == "torn-write":
        tag = "segment.write" if settings.wal_level is WalLevel.OFF else "wal.append"
        own = f"torn@{tag}:{rng.randint(1, 40)}"
    elif mode == "checkpoint":
        own = f"crash@{rng.choice(CHECKPOINT_STEPS)}:{rng.randint(1, 3)}"
    return ";".join(x for x in (inherited, own) if x)


def _start(db_dir: Path, options: SimOptions, faults: str, checkpoint_every: int) -> Child:
    batches = max(1, options.rows // options.batch_rows)
    argv = [
        str(db_dir),
        SCRATCH_NAME,
        "--batches",
        str(batches),
        "--rows",
        str(options.batch_rows),
        "--checkpoint-every",
        str(checkpoint_every),
        "--delete-every",
        str(DELETE_EVERY),
        "--no-close",
    ]
    return start_workload(argv, faults)


def _crash(
    child: Child,
    mode: str,
    rng: random.Random,
    hold: float = 0.0,
    after: str | None = None,
) -> tuple[str, float]:
    """Let the child run (at least ``hold`` seconds; with ``after``, at least until it
    printed a line starting so), kill it (unless its fault killed it), return its output
    and the monotonic time of the kill. The child never outlives this call, whatever
    stops it (Ctrl-C included)."""
    assert child.stdout is not None
    try:
        first = child.stdout.readline()
        while after is not None and (line := child.stdout.readline()):
            first += line
            if line.startswith(after):
                break
        if mode in ("kill", "power-loss", "bitflip"):
            time.sleep(hold + rng.uniform(0.02, 0.5))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
        try:
            rest, _ = child.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            child.kill()
            rest, _ = child.communicate()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return first + rest, time.monotonic()


def _judge(
    db_dir: Path, acks: workload.Acks, options: SimOptions, settings: Settings, killed_at: float
) -> workload.Verdict:
    level = settings.wal_level
    if options.mode == "power-loss" and level is WalLevel.FLUSH:
        # the promise covers batches acknowledged before the last fsync period
        window = settings.wal_fsync_period_ms / 1000 + FLUSH_WINDOW_MARGIN
        acks = workload.Acks(
            {n for n in acks.acked if acks.times.get(n, killed_at) < killed_at - window},
            acks.checkpointed_through,
            acks.times,
        )
    try:
        Database.open(db_dir, SCRATCH_NAME, background=False).close()  # recovery as a writer
        return workload.verify(db_dir, SCRATCH_NAME, acks, options.batch_rows, level, DELETE_EVERY)
    except EngineError as exc:
        return workload.Verdict(
            ok=False,
            acked=len(acks.acked),
            recovered=0,
            lost=sorted(acks.acked),
            problems=[f"the database does not open: {exc}"],
        )


def _flip_and_check(db_dir: Path, rng: random.Random, target: str) -> str | None:
    """Flip bits in the WAL or in a segment; the damage must be reported. Returns how it
    was, or None if no flip landed anywhere that matters (the trial is then judged like a
    kill)."""
    if target == "segment":
        # the live ones: a file a crashed checkpoint left unlisted is removed at open,
        # so damage there proves nothing
        files = sorted(db_dir / f for f in manifest_format.load(db_dir).segment_files())
    else:
        files = [p for p in (db_dir / "wal").glob("*.wal") if p.stat().st_size > 64]
    if not files:
        return None
    path = rng.choice(files)
    data = bytearray(path.read_bytes())
    flips = rng.randint(1, 3)
    for _ in range(flips):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    IO.write_file_atomic(path, bytes(data), "crashsim.flip")
    found = f"{flips} bit(s) flipped in {path.name}"
    wal_report = walcheck.verify(db_dir, SCRATCH_NAME)
    if not wal_report.ok:
        return f"{found}: wal verify found {len(wal_report.problems)} problem(s)"
    if target == "segment":
        db_report = dbverify.verify_database(db_dir, SCRATCH_NAME)
        if not db_report.ok:
            return f"{found}: db verify found {len(db_report.problems)} problem(s)"
    try:
        db = Database.open(db_dir, SCRATCH_NAME, readonly=True)
        for table in db.tables():
            db.scan(table)
    except Corruption:
        return f"{found}: the database refused to open or to read"
    return None
