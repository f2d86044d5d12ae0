"""Trials of one site: a primary killed, frozen or cut from power under ``serve``
(``serve-kill``, ``power-loss``), and piped ``ingest`` runs with deletes and an expiry,
one of them killed (``ingest-mix``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.io.fileio import simulate_power_loss
from tests.chaos import sites
from tests.chaos.context import FLUSH_SLACK, Context, wait
from tests.chaos.ledger import STEP_NS, T0, check, lost_window, present_keys, rows_of
from tests.chaos.sites import DB, Served, finish, kill, spawn

# -- serve-kill and power-loss ------------------------------------------------------------


def serve_kill(ctx: Context) -> None:
    level = ctx.choose("level", ["off", "sync", "flush", "byrl"])
    a = ctx.work / "a"
    sites.create(a, level, replica=str(ctx.work / "store") if level == "byrl" else None)
    served = Served(a, ctx.ledger, env=ctx.faults())
    served.start()
    served.start_writers(ctx.rng.randint(1, 4), ctx.rng.choice([1, 20, 200]))
    served.wait_first_ack()
    wait(ctx.moment("kill_after", 0.1, 1.5))
    if ctx.choose("freeze_first", [False, True]):
        served.pause(ctx.moment("frozen", 0.05, 0.8))
        wait(ctx.moment("then", 0.0, 0.4))
    served.kill()
    rows = rows_of(a, DB, recover=True)
    required = set() if level == "off" else set(ctx.ledger.acked)
    ctx.violations += check(rows, ctx.ledger, required, f"{level} primary after SIGKILL")
    ctx.figures["acked"] = len(ctx.ledger.acked)


def power_loss(ctx: Context) -> None:
    level = ctx.choose("level", ["sync", "flush"])
    a = ctx.work / "a"
    journal = ctx.work / "journal"
    sites.create(a, level)
    served = Served(a, ctx.ledger, env=ctx.faults(f"journal={journal}"))
    served.start()
    served.start_writers(ctx.rng.randint(1, 4), ctx.rng.choice([1, 20, 200]))
    served.wait_first_ack()
    wait(ctx.moment("cut_after", 0.1, 1.5))
    moment = served.kill()
    simulate_power_loss(journal, a)
    rows = rows_of(a, DB, recover=True)
    window = 0.0 if level == "sync" else sites.FSYNC_PERIOD_MS / 1000 + FLUSH_SLACK
    required = ctx.ledger.acked_before(moment - window)
    ctx.violations += check(rows, ctx.ledger, required, f"{level} primary after a power loss")
    ctx.figures["acked"] = len(ctx.ledger.acked)
    if level == "flush":
        ctx.figures["flush_lost_window_s"] = lost_window(ctx.ledger, present_keys(rows), moment)


# -- ingest-mix ---------------------------------------------------------------------------


@dataclass
class IngestSite:
    """A primary written by piped ``ingest`` runs, with deletes and an expiry mixed in;
    ``ops`` steps run one after another, the chosen one killed at a random moment."""

    ctx: Context
    data: Path
    env: dict[str, str] = field(default_factory=dict)
    expired: bool = False

    def step(self, victim: bool) -> None:
        choices = ["ingest", "ingest", "ingest", "delete"] + ([] if self.expired else ["old"])
        if self.ctx.ledger.old_keys and not self.expired:
            choices.append("expire")
        what = self.ctx.rng.choice(choices)
        self.ctx.params.setdefault("steps", []).append(what + (" (killed)" if victim else ""))
        if what in ("ingest", "old"):
            self.ingest(victim, old=what == "old")
        elif what == "delete":
            self.delete(victim)
        else:
            self.expire(victim)

    def run(self, args: list[str], stdin: bytes, victim: bool) -> int:
        process = spawn(self.data, *args, env=self.env, stdin=True)
        if victim:
            assert process.stdin is not None
            cut = self.ctx.rng.randint(0, len(stdin))
            process.stdin.write(stdin[:cut])
            process.stdin.flush()
            wait(self.ctx.moment("kill_after", 0.0, 0.8))
            kill(process)
            process.stdin.close()
            return -9
        code, err = finish(process, stdin=stdin)
        self.ctx.expect(code == 0, f"{' '.join(args[:2])} exited {code}: {err.strip()}")
        return code

    def ingest(self, victim: bool, *, old: bool = False) -> None:
        lines = self.ctx.rng.choice([10, 600, 3000])
        keys, body = self.ctx.ledger.batch("i", lines, old=old)
        args = ["ingest", "lp", DB, "-", "--batch-rows", "500"]
        if self.run(args, body, victim) == 0:
            self.ctx.ledger.ack(keys)

    def delete(self, victim: bool) -> None:
        sent = [k for k in self.ctx.ledger.keys_of("i") if k not in self.ctx.ledger.old_keys]
        acked = [k for k in sent if k in self.ctx.ledger.acked]
        if not acked:  # the table may not exist yet: a delete would be refused (exit 1)
            return
        first = self.ctx.rng.choice(acked)
        last = min(first + self.ctx.rng.randint(1, 800), sent[-1])
        start, end = T0 + first * STEP_NS, T0 + (last + 1) * STEP_NS
        args = ["delete", DB, "cpu", "--start", str(start), "--end", str(end), "--where", "w=i"]
        code = self.run([*args, "--yes"], b"", victim)
        gone = {k for k in sent if first <= k <= last}
        self.ctx.ledger.deleting(gone, acknowledged=code == 0)

    def expire(self, victim: bool) -> None:
        code = self.run(["config", "set", DB, "retention", "5d", "--yes"], b"", victim)
        self.ctx.ledger.deleting(set(self.ctx.ledger.old_keys), acknowledged=code == 0)
        self.expired = True


def ingest_mix(ctx: Context) -> None:
    level = ctx.choose("level", ["off", "sync", "flush", "byrl"])
    a = ctx.work / "a"
    sites.create(a, level, replica=str(ctx.work / "store") if level == "byrl" else None)
    site = IngestSite(ctx, a, env=ctx.faults())
    steps = ctx.rng.randint(3, 6)
    victim = ctx.rng.randrange(steps)
    for n in range(steps):
        site.step(n == victim)
    rows = rows_of(a, DB, recover=True)
    # every level: an ingest that exited 0 closed cleanly, with a checkpoint
    ctx.violations += check(rows, ctx.ledger, set(ctx.ledger.acked), f"{level} primary")
    ctx.figures["acked"] = len(ctx.ledger.acked)
