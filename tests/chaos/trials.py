"""The kinds of trial. Each drives real processes into one kind of fault at a random
moment, then checks every surviving copy with the ledger (tests/chaos/ledger.py):

``serve-kill``   a primary under ``serve`` at each WAL level, SIGKILLed (sometimes
                 SIGSTOPped first) while HTTP clients write.
``power-loss``   the same, then the files cut back to what was fsynced (the I/O
                 layer's journal), at ``sync`` and ``flush``.
``ingest-mix``   piped ``ingest`` runs, deletes and an expiry at each WAL level, one of
                 them SIGKILLed at a random moment.
``failover``     a primary serving at ``byrl`` or ``sync`` to a local or S3 store (S3
                 through the fault proxy: refused, hanging or slow), a live follower
                 killed or frozen; the primary is killed and its site wiped, then the
                 standby promoted (the promotion itself sometimes killed and rerun).
``converge``     piped ingest with deletes, a ``replicate`` service and a follower,
                 both killed and restarted at random; then both sites match by checksum.
``contenders``   one or two standbys promoted while the old primary still writes at
                 ``byrl``: one winner, the old primary fenced, the loser refusing writes.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import ops
from engine.fileio import simulate_power_loss
from engine.replication.primary import replicate
from tests.chaos import sites
from tests.chaos.ledger import (
    STEP_NS,
    T0,
    Ledger,
    check,
    lost_window,
    present_keys,
    rows_of,
)
from tests.chaos.proxy import FaultProxy
from tests.chaos.sites import DB, Served, cli, finish, ingest, kill, spawn, wipe

FLUSH_SLACK = 0.3  # s: scheduling of the flush thread on two busy cores
SYNC_FAILOVER_SLACK = 1.0  # s: one upload round beyond the shipping interval
# a service's exit codes on SIGTERM: stopped (0), interrupted in a first build or round
# (143, "nothing was left half-written"), or before its handler was installed (-15:
# still importing, nothing begun)
STOPPED = (0, 143, -15)


@dataclass
class S3Site:
    """The worker's moto server and the fault proxy in front of it."""

    direct: dict[str, str]  # AWS environment pointing at moto
    proxy: FaultProxy

    @property
    def through_proxy(self) -> dict[str, str]:
        return {**self.direct, "AWS_ENDPOINT_URL": self.proxy.endpoint}


@dataclass
class Context:
    index: int
    rng: random.Random
    work: Path
    s3: S3Site | None
    plant: str | None = None  # a planted bug, to prove the checker fails
    pinned: dict[str, str] = field(default_factory=dict)  # choices made by the caller
    ledger: Ledger = field(default_factory=Ledger)
    params: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def choose(self, name: str, options: list[Any]) -> Any:
        value = self.rng.choice(options)  # drawn even when pinned: the rest stays the same
        if name in self.pinned:
            value = next(o for o in options if str(o) == self.pinned[name])
        self.params[name] = value
        return value

    def moment(self, name: str, low: float, high: float) -> float:
        self.params[name] = value = round(self.rng.uniform(low, high), 3)
        return value

    def expect(self, condition: bool, violation: str) -> None:
        if not condition:
            self.violations.append(violation)

    def faults(self, spec: str = "") -> dict[str, str]:
        spec = ";".join(filter(None, [spec, self.plant]))
        return {"TSADMIN_FAULTS": spec} if spec else {}


def wait(seconds: float) -> None:
    """Let the load run this long: the random moment of a fault (not synchronisation)."""
    time.sleep(seconds)


# -- serve-kill and power-loss ------------------------------------------------------------


def serve_kill(ctx: Context) -> None:
    level = ctx.choose("level", ["off", "sync", "flush", "byrl"])
    a = ctx.work / "a"
    sites.create(a, level, replica=str(ctx.work / "store") if level == "byrl" else None)
    served = Served(a, ctx.ledger, env=ctx.faults())
    served.start()
    served.start_writers(ctx.rng.randint(1, 4), ctx.rng.choice([1, 20, 200]))
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


# -- failover, converge, contenders -------------------------------------------------------


def store_of(ctx: Context, kind: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """A store URL; the environment of the primary (through the proxy) and of the standby."""
    if kind == "local":
        return str(ctx.work / "store"), {}, {}
    assert ctx.s3 is not None
    from tests.servers import make_bucket

    bucket = f"chaos-{ctx.index}-{ctx.rng.randrange(10**9)}"
    make_bucket(ctx.s3.direct, bucket)
    return f"s3://{bucket}/{DB}", ctx.s3.through_proxy, ctx.s3.direct


def seeded_primary(
    ctx: Context, level: str, store: str
) -> tuple[Path, str, dict[str, str], dict[str, str]]:
    a = ctx.work / "a"
    url, primary_env, standby_env = store_of(ctx, store)
    # in-process setup speaks to the store directly (this process's environment)
    sites.create(a, level, replica=url)
    replicate(a, DB, once=True)  # the first snapshot, which a standby is built from
    return a, url, primary_env, standby_env


def failover(ctx: Context) -> None:
    level = ctx.choose("level", ["byrl", "byrl", "sync"])
    store = ctx.choose("store", ["local", "s3"] if ctx.s3 else ["local"])
    a, url, primary_env, standby_env = seeded_primary(ctx, level, store)
    b = ctx.work / "b"
    follower = spawn(b, "follow", url, DB, env=standby_env)
    store_fault, faults = "none", ""
    if level == "byrl" and store == "s3":  # through the proxy, from a random moment on
        store_fault = ctx.choose("store_fault", ["none", "refuse", "hang", "slow"])
    elif level == "byrl":  # the local store's volume fills up after a random number of writes
        store_fault = ctx.choose("store_fault", ["none", "full"])
        if store_fault == "full":
            faults = f"enospc@store.write:{ctx.rng.randint(1, 60)}"
    served = Served(a, ctx.ledger, env={**primary_env, **ctx.faults(faults)})
    served.start()
    served.start_writers(ctx.rng.randint(1, 4), ctx.rng.choice([1, 20, 200]))
    follower_fault = ctx.choose("follower_fault", ["none", "kill", "stop"])
    wait(ctx.moment("fault_after", 0.1, 0.8))
    if store == "s3" and store_fault != "none" and ctx.s3:
        ctx.s3.proxy.set(store_fault)
    if follower_fault == "kill":
        kill(follower)
        follower = spawn(b, "follow", url, DB, env=standby_env)
    elif follower_fault == "stop":
        follower.send_signal(signal.SIGSTOP)  # frozen while the primary writes
    wait(ctx.moment("lost_after", 0.1, 1.2))
    moment = served.kill()
    if ctx.s3:
        ctx.s3.proxy.set("pass")
    wipe(a)
    if follower_fault == "stop":
        kill(follower)  # the frozen follower's machine is rebooted before the promotion
    promoted = promote(ctx, b, standby_env)
    finish(follower, timeout=60)
    if not promoted:
        return
    rows = rows_of(b, DB)
    window = 0.0 if level == "byrl" else sites.SHIP_INTERVAL + SYNC_FAILOVER_SLACK
    required = ctx.ledger.acked_before(moment - window)
    ctx.violations += check(
        rows, ctx.ledger, required, f"standby promoted after a {level} primary was lost"
    )
    if level == "sync":
        ctx.figures["sync_lost_window_s"] = lost_window(ctx.ledger, present_keys(rows), moment)
    ctx.figures["acked"] = len(ctx.ledger.acked)
    ctx.expect(
        ingest(b, ctx.ledger, "n", 20, env=standby_env) == 0, "the new primary refused a write"
    )


def promote(ctx: Context, site: Path, env: dict[str, str]) -> bool:
    """Promote ``site`` (sometimes killing the first attempt at a random moment); whether
    it ended promoted."""
    fault = ctx.choose("promote_fault", ["none", "none", "kill", "stop"])
    if fault == "stop":  # frozen for a while, then left to finish
        process = spawn(site, "promote", DB, env=env)
        wait(ctx.moment("promote_frozen_after", 0.0, 1.0))
        process.send_signal(signal.SIGSTOP)
        wait(ctx.moment("promote_frozen", 0.05, 1.0))
        process.send_signal(signal.SIGCONT)
        code, err = finish(process)
        ctx.expect(code == 0, f"promote exited {code} after a freeze: {err.strip()}")
        return code == 0
    if fault == "kill":
        process = spawn(site, "promote", DB, env=env)
        wait(ctx.moment("promote_killed_after", 0.0, 1.0))
        kill(process)
        if process.returncode == 0:
            return True  # it had finished before the kill
    done = cli(site, "promote", DB, env=env)
    ctx.expect(
        done.returncode == 0, f"promote exited {done.returncode}: {done.stderr.decode()[-300:]}"
    )
    return done.returncode == 0


def converge(ctx: Context) -> None:
    level = ctx.choose("level", ["sync", "flush"])  # off has no WAL to ship
    store = ctx.choose("store", ["local", "s3"] if ctx.s3 else ["local"])
    a, url, primary_env, standby_env = seeded_primary(ctx, level, store)
    b = ctx.work / "b"
    shipper = spawn(a, "replicate", DB, env=primary_env)
    follower = spawn(b, "follow", url, DB, env=standby_env)
    site = IngestSite(ctx, a, env={**primary_env, **ctx.faults()})
    for n in range(ctx.rng.randint(3, 6)):
        site.step(victim=ctx.rng.random() < 0.2)
        fault = ctx.rng.choice(
            ["none", "none", "shipper", "stop-shipper", "follower", "stop-follower"]
        )
        ctx.params.setdefault("faults", []).append(fault)
        if fault == "shipper":
            kill(shipper)
            shipper = spawn(a, "replicate", DB, env=primary_env)
        elif fault == "follower":
            kill(follower)
            follower = spawn(b, "follow", url, DB, env=standby_env)
        elif fault.startswith("stop-"):
            frozen = shipper if fault == "stop-shipper" else follower
            frozen.send_signal(signal.SIGSTOP)
            wait(ctx.moment(f"frozen_{n}", 0.05, 0.5))
            frozen.send_signal(signal.SIGCONT)
    for what, service in (("replicate", shipper), ("follow", follower)):
        service.terminate()
        code, err = finish(service)
        ctx.expect(code in STOPPED, f"{what} exited {code} on SIGTERM: {err.strip()}")
    for data, args, env in (
        (a, ["replicate", DB, "--once"], primary_env),
        (b, ["follow", url, DB, "--once"], standby_env),
    ):
        done = cli(data, *args, env=env)
        ctx.expect(
            done.returncode == 0,
            f"{args[0]} --once exited {done.returncode}: {done.stderr.decode()[-300:]}",
        )
    rows_a = rows_of(a, DB, recover=True)
    ctx.violations += check(rows_a, ctx.ledger, set(ctx.ledger.acked), f"{level} primary")
    ctx.violations += check(rows_of(b, DB), ctx.ledger, set(ctx.ledger.acked), "standby")
    ours, theirs = ops.database_checksum(a, DB)["sha256"], ops.database_checksum(b, DB)["sha256"]
    ctx.expect(
        ours == theirs, f"primary and standby differ by db checksum: {ours[:12]} {theirs[:12]}"
    )
    ctx.figures["acked"] = len(ctx.ledger.acked)


def contenders(ctx: Context) -> None:
    store = ctx.choose("store", ["local", "s3"] if ctx.s3 else ["local"])
    a, url, primary_env, standby_env = seeded_primary(ctx, "byrl", store)
    count = ctx.choose("contenders", [1, 2, 2])
    standbys = [ctx.work / name for name in ("b", "c")[:count]]
    built = [spawn(s, "follow", url, DB, "--once", env=standby_env) for s in standbys]
    served = Served(a, ctx.ledger, env={**primary_env, **ctx.faults()})
    served.start()
    served.start_writers(ctx.rng.randint(1, 4), ctx.rng.choice([1, 20, 200]))
    for process in built:
        code, err = finish(process)
        ctx.expect(code == 0, f"follow --once exited {code}: {err.strip()}")
    wait(ctx.moment("promote_after", 0.0, 0.8))
    promotions = [spawn(s, "promote", DB, env=standby_env) for s in standbys]
    codes = [finish(p)[0] for p in promotions]
    ctx.params["codes"] = codes
    winners = [s for s, code in zip(standbys, codes, strict=True) if code == 0]
    ctx.expect(len(winners) == 1, f"{len(winners)} of {count} contenders won: exit codes {codes}")
    late = served.status("POST", f"/write?db={DB}", ctx.ledger.batch("late", 1)[1])
    ctx.expect(late != 204, "the old primary accepted a write after the new epoch was claimed")
    served.kill()
    if len(winners) != 1:
        return
    winner = winners[0]
    rows = rows_of(winner, DB)
    ctx.violations += check(rows, ctx.ledger, set(ctx.ledger.acked), "the winning standby")
    ctx.figures["acked"] = len(ctx.ledger.acked)
    for loser in set(standbys) - {winner}:
        code = ingest(loser, ctx.ledger, "loser", 5, env=standby_env)
        ctx.expect(code == 9, f"the losing contender answered {code} to a write, not 9")
    code = ingest(winner, ctx.ledger, "n", 20, env=standby_env)
    ctx.expect(code == 0, f"the winner refused a write: exit {code}")


KINDS: dict[str, Callable[[Context], None]] = {
    "serve-kill": serve_kill,
    "power-loss": power_loss,
    "ingest-mix": ingest_mix,
    "failover": failover,
    "converge": converge,
    "contenders": contenders,
}
# how often each kind is drawn: the cheap ones more, every one often
WEIGHTS = {
    "serve-kill": 3,
    "power-loss": 2,
    "ingest-mix": 2,
    "failover": 3,
    "converge": 1,
    "contenders": 1,
}
