"""A/B: ``tsadmin ingest lp`` of the same TSBS file from two source trees, same machine,
same run, so a change's cost is a ratio, not a guess.

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/lp_ingest_ab.py /tmp/before . --rows 1000000

Each tree runs the real CLI (``python -m tsadmin`` with the tree first on
``PYTHONPATH``) into a fresh database at ``wal_level off`` (so the disk does not
hide the CPU cost; ``--wal-level sync`` for a change to the logged path), three
times, alternating; the median rows/s of each and their
ratio are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ingest_peers import write_inputs


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that runs ``tree``'s code: it first on ``PYTHONPATH``."""
    return dict(os.environ, PYTHONPATH=str(tree.resolve()))


def one_run(tree: Path, source: Path, work: Path, rows: int, level: str) -> float:
    data = Path(tempfile.mkdtemp(dir=work))
    env = tree_env(tree)
    cli = [sys.executable, "-m", "tsadmin", "--data-dir", str(data)]
    subprocess.run([*cli, "db", "create", "b", "--wal-level", level], env=env, check=True)
    started = time.perf_counter()
    subprocess.run([*cli, "--quiet", "ingest", "lp", "b", str(source)], env=env, check=True)
    seconds = time.perf_counter() - started
    shutil.rmtree(data)
    return rows / seconds


def parser_of(tree: Path) -> str:
    """What ``tsadmin --version`` of ``tree`` says (which line-protocol parser it runs:
    a worktree without its native extension built runs the Python one)."""
    done = subprocess.run(
        [sys.executable, "-m", "tsadmin", "--version"],
        env=tree_env(tree),
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--wal-level", default="off", choices=["off", "sync", "flush"])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "lp_ingest_ab.json"
    )
    args = parser.parse_args()
    versions = {
        side: parser_of(tree) for side, tree in (("before", args.before), ("after", args.after))
    }
    if ("native" in versions["before"]) != ("native" in versions["after"]):
        print(f"the trees run different parsers: {versions}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        work = Path(tmp)
        source, _csv = write_inputs(work, args.rows)
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.trials):
            for side in ("before", "after"):
                tree = args.before if side == "before" else args.after
                rates[side].append(one_run(tree, source, work, args.rows, args.wal_level))
    before, after = statistics.median(rates["before"]), statistics.median(rates["after"])
    result = {
        "rows": args.rows,
        "wal_level": args.wal_level,
        "before": {
            "tree": str(args.before),
            "version": versions["before"],
            "rows_per_s": before,
            "trials": rates["before"],
        },
        "after": {
            "tree": str(args.after),
            "version": versions["after"],
            "rows_per_s": after,
            "trials": rates["after"],
        },
        "after_over_before": after / before,
    }
    print(
        f"TSBS line protocol, {args.rows:,} rows, wal_level {args.wal_level}, "
        f"median of {args.trials}: "
        f"before {before:,.0f} rows/s, after {after:,.0f} rows/s ({after / before:.3f}x)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
