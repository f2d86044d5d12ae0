"""Run trials (tests/chaos/trials.py) in worker processes, each with its own moto server
and fault proxy, and gather the report: trials and violations per kind, the windows
measured, and the seed and index that rerun any failed trial alone."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos import sites
from tests.chaos.context import Context, S3Site
from tests.chaos.proxy import FaultProxy
from tests.chaos.trials import KINDS, WEIGHTS

TRIAL_SECONDS_LIMIT = 240  # a trial that takes longer is hung: a violation
_S3: S3Site | None = None


def kind_of(seed: int, index: int, kinds: list[str]) -> tuple[str, random.Random]:
    rng = random.Random(f"{seed}:{index}")
    return rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0], rng


def run_trial(seed: int, index: int, plan: Plan) -> dict[str, Any]:
    kind, rng = kind_of(seed, index, plan.kinds)
    work = Path(tempfile.mkdtemp(prefix=f"tsadmin-chaos-{index}-"))
    ctx = Context(index, rng, work, _S3, plant=plan.plant, pinned=plan.pinned)
    keep = plan.keep
    started = time.monotonic()
    signal.signal(signal.SIGALRM, _hung)
    signal.alarm(TRIAL_SECONDS_LIMIT)
    try:
        KINDS[kind](ctx)
    except Exception as exc:  # the trial could not run to its checks: that is a failure too
        lines = traceback.format_exception(exc)
        ctx.violations.append(f"trial error: {type(exc).__name__}: {exc} | {''.join(lines[-3:])}")
    finally:
        signal.alarm(0)
        sites.kill_strays()
        if _S3 is not None:
            _S3.proxy.set("pass")
    if ctx.violations and keep is not None:
        shutil.move(str(work), keep / f"trial-{seed}-{index}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "index": index,
        "kind": kind,
        "params": ctx.params,
        "violations": ctx.violations,
        "figures": ctx.figures,
        "seconds": round(time.monotonic() - started, 2),
    }


class TrialHung(Exception):
    pass


def _hung(signum: int, frame: object) -> None:
    raise TrialHung(f"the trial took over {TRIAL_SECONDS_LIMIT} s")


def _worker_start(endpoints: Any) -> None:
    global _S3
    endpoint = endpoints.get()
    if endpoint is None:
        return
    direct = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    os.environ.update(direct)  # the setup done in-process speaks to moto directly
    _S3 = S3Site(direct, FaultProxy(int(endpoint.rsplit(":", 1)[1])))


@contextlib.contextmanager
def moto_servers(count: int) -> Iterator[list[str | None]]:
    from tests.servers import s3_server

    with contextlib.ExitStack() as stack:
        try:
            envs = [stack.enter_context(s3_server()) for _ in range(count)]
        except (OSError, FileNotFoundError):
            yield [None] * count
            return
        yield [env["AWS_ENDPOINT_URL"] for env in envs]


@dataclass
class Plan:
    seed: int
    trials: list[int]
    kinds: list[str]
    workers: int = 2
    plant: str | None = None
    keep: Path | None = None
    pinned: dict[str, str] = field(default_factory=dict)


def run(plan: Plan, on_result: Any = None) -> dict[str, Any]:
    """Run the plan's trials; the report (see :func:`summary`)."""
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    context = multiprocessing.get_context("forkserver")
    with moto_servers(plan.workers) as endpoints:
        queue = context.Manager().Queue()
        for endpoint in endpoints:
            queue.put(endpoint)
        with ProcessPoolExecutor(
            plan.workers, mp_context=context, initializer=_worker_start, initargs=(queue,)
        ) as pool:
            futures = [pool.submit(run_trial, plan.seed, i, plan) for i in plan.trials]
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                if on_result is not None:
                    on_result(result)
    return summary(plan, sorted(results, key=lambda r: r["index"]), time.monotonic() - started)


def rerun(plan: Plan, index: int) -> str:
    """The command that reruns one trial alone: its seed and index, and whatever else
    shaped it (a trial is drawn from the kinds in play; pins and a plant change it)."""
    out = f"--seed {plan.seed} --only {index}"
    out += "" if plan.kinds == list(KINDS) else f" --kinds {','.join(plan.kinds)}"
    out += "".join(f" --pin {k}={v}" for k, v in plan.pinned.items())
    out += f" --plant {plan.plant}" if plan.plant else ""
    return f"make chaos ARGS='{out}'"


def summary(plan: Plan, results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    per_kind: dict[str, Counter[str]] = {}
    for r in results:
        counts = per_kind.setdefault(r["kind"], Counter())
        counts["trials"] += 1
        counts["violations"] += bool(r["violations"])
        counts["acknowledged points"] += int(r["figures"].get("acked", 0))
        for name, value in r["params"].items():
            if name in (
                "level",
                "store",
                "store_fault",
                "follower_fault",
                "promote_fault",
                "contenders",
                "freeze_first",
            ):
                counts[f"{name}={value}"] += 1
        for step in r["params"].get("steps", []) + r["params"].get("faults", []):
            counts[f"step {step}"] += 1
    windows = {
        name: max((r["figures"][name] for r in results if name in r["figures"]), default=None)
        for name in ("flush_lost_window_s", "sync_lost_window_s")
    }
    failed = [r for r in results if r["violations"]]
    return {
        "seed": plan.seed,
        "trials": len(results),
        "workers": plan.workers,
        "seconds": round(seconds, 1),
        "planted": plan.plant,
        "failed": len(failed),
        "per_kind": {k: dict(v) for k, v in sorted(per_kind.items())},
        "max_windows": windows,
        "failures": [
            {
                "index": r["index"],
                "kind": r["kind"],
                "params": r["params"],
                "violations": r["violations"],
                "rerun": rerun(plan, r["index"]),
            }
            for r in failed
        ],
    }
