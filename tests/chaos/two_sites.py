"""Trials of two sites sharing a store: a primary lost and its standby promoted
(``failover``), a shipper and a follower killed until both sites match (``converge``),
and standbys promoted while the old primary still writes (``contenders``)."""

from __future__ import annotations

import signal
from pathlib import Path

from engine import ops
from engine.replication.primary import replicate
from tests.chaos import sites
from tests.chaos.context import STOPPED, SYNC_FAILOVER_SLACK, Context, wait
from tests.chaos.ledger import check, lost_window, present_keys, rows_of
from tests.chaos.one_site import IngestSite
from tests.chaos.sites import DB, Served, cli, finish, ingest, kill, spawn, wipe

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
    ours, theirs = ops.database_checksum(a, DB).sha256, ops.database_checksum(b, DB).sha256
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
