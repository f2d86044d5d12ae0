"""CLI start-up: what a short command costs before it does anything.

Every operator command and every line of a cron script pays the interpreter's start
and the imports of the command it runs. Measured as the median wall time of 15 runs
each, as a shell runs them (a fresh process, the installed ``tsadmin`` entry point):

* ``tsadmin --version`` (nothing but the CLI's frame);
* ``tsadmin db list`` on a data dir of three small databases (opens each read-only);

against the physical floor of the same interpreter: ``python -c pass`` and
``python -c "import typer"`` (the CLI framework alone). The target (issue 26):
both commands well under 0.25 s.

Run: ``.venv/bin/python benchmarks/cli_startup.py [--out FILE]`` (``--rows`` is
accepted and ignored: start-up does not depend on the data).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RUNS = 15
TSADMIN = str(Path(sys.executable).with_name("tsadmin"))


def median_seconds(cmd: list[str], env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSADMIN_")}
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data")
        for name in ("a", "b", "c"):
            subprocess.run([TSADMIN, "--data-dir", data, "db", "create", name], check=True, env=env)
            subprocess.run(
                [TSADMIN, "--data-dir", data, "ingest", "lp", name, "-"],
                input=b"cpu,host=h1 usage=1 1700000000000000000\n",
                check=True,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        out: dict[str, Any] = {
            "runs": RUNS,
            "python": median_seconds([sys.executable, "-c", "pass"], env),
            "import_typer": median_seconds([sys.executable, "-c", "import typer"], env),
            "version": median_seconds([TSADMIN, "--version"], env),
            "db_list": median_seconds([TSADMIN, "--data-dir", data, "db", "list"], env),
        }
    for key in ("version", "db_list", "import_typer", "python"):
        print(f"{key:>14}: {out[key] * 1000:6.0f} ms")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
