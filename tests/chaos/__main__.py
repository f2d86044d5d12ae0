"""``make chaos``: a seeded campaign of fault trials against real processes.

    python -m tests.chaos [--trials 1000] [--seed S] [--only I ...] [--workers 2]
                          [--kinds serve-kill,failover,...] [--pin level=sync]
                          [--plant nofsync] [--keep DIR] [--out DIR]

Every trial is drawn from the seed and its index alone, so ``--seed S --only I`` reruns a
failed trial by itself (its directory is kept under ``--keep``). Writes ``chaos.json``
and ``chaos.md`` to ``--out`` (default ``benchmarks/results/``) and exits 1 if any
trial found a violation."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tabulate import tabulate

from tests.chaos.campaign import Plan, run
from tests.chaos.trials import KINDS

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", type=int, nargs="*", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--plant", default=None, help="a fault spec every trial's processes get")
    parser.add_argument(
        "--pin", action="append", default=[], help="NAME=VALUE: make this choice (e.g. level=sync)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep failed trials' files here")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    kinds = args.kinds.split(",")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    trials = args.only if args.only is not None else list(range(args.trials))
    if not trials:
        parser.error("no trials to run (--trials must be at least 1)")
    pinned = dict(item.split("=", 1) for item in args.pin)
    plan = Plan(
        seed,
        trials,
        kinds,
        workers=min(args.workers, len(trials)),
        plant=args.plant,
        keep=args.keep,
        pinned=pinned,
    )
    print(f"chaos: seed {seed}, {len(trials)} trials, {plan.workers} workers", flush=True)
    report = run(plan, on_result=_say)
    if args.only is None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "chaos.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "chaos.md").write_text(markdown(report))
    print(markdown(report))
    return 1 if report["failed"] else 0


def _say(result: dict[str, Any]) -> None:
    mark = "FAIL" if result["violations"] else "ok"
    print(
        f"  trial {result['index']:4d} {result['kind']:<11} {result['seconds']:6.1f} s {mark}",
        flush=True,
    )
    for violation in result["violations"]:
        print(f"      {violation}", flush=True)


def markdown(report: dict[str, Any]) -> str:
    rows = []
    for kind, counts in report["per_kind"].items():
        detail = ", ".join(
            f"{k} {v}"
            for k, v in sorted(counts.items())
            if k not in ("trials", "violations", "acknowledged points")
        )
        rows.append(
            [
                kind,
                counts["trials"],
                counts["violations"],
                counts.get("acknowledged points", 0),
                detail,
            ]
        )
    table = tabulate(
        rows,
        headers=["kind", "trials", "failed", "acked points", "faults drawn"],
        tablefmt="github",
    )
    windows = report["max_windows"]
    planted = f" (planted: `{report['planted']}`)" if report["planted"] else ""
    parts = [
        "# Fault campaign (`make chaos`)\n",
        f"Seed {report['seed']}: {report['trials']} trials on {report['workers']} workers in "
        f"{report['seconds']:.0f} s; **{report['failed']} with a violation**{planted}.\n",
        table + "\n",
        "Largest loss window measured: flush after a power loss "
        f"{_seconds(windows['flush_lost_window_s'])} (allowed: the fsync period plus 0.3 s), "
        f"sync across a failover {_seconds(windows['sync_lost_window_s'])} (allowed: the "
        "shipping interval plus 1 s).\n",
    ]
    for failure in report["failures"]:
        said = "; ".join(v.replace("\n", " ") for v in failure["violations"])
        parts.append(f"- trial {failure['index']} ({failure['kind']}): {said}")
        parts.append(f"  rerun: `{failure['rerun']}`")
    return "\n".join(parts) + "\n"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


if __name__ == "__main__":
    sys.exit(main())
