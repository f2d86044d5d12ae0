"""The fault campaign's smoke run: one trial of each kind (a fresh seed each run: a
failure prints the command that reruns it), and the checker failing on a planted bug."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.trials import KINDS
from tests.conftest import CLEAN_ENV, ROOT


def campaign(out: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos", "--out", str(out), *args],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        cwd=ROOT,
        timeout=600,
    )
    report = json.loads((out / "chaos.json").read_text()) if (out / "chaos.json").exists() else {}
    return done.returncode, report, done.stdout + done.stderr


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_trial_of_each_kind_finds_no_violation(tmp_path: Path, kind: str) -> None:
    seed = time.time_ns() % 10**9
    code, report, said = campaign(tmp_path, "--kinds", kind, "--trials", "1", "--seed", str(seed))
    assert code == 0 and report["failed"] == 0, said
    assert report["per_kind"][kind]["trials"] == 1


def test_the_checker_catches_a_planted_missing_fsync(tmp_path: Path) -> None:
    """With fsync made a no-op, a power loss at sync loses acknowledged writes: the
    campaign must say so, name the trial and exit 1."""
    seed = time.time_ns() % 10**9
    args = ["--kinds", "power-loss", "--trials", "2", "--seed", str(seed), "--plant", "nofsync"]
    args += ["--pin", "level=sync"]
    code, report, said = campaign(tmp_path, *args)
    assert code == 1, said
    assert report["failed"] == 2, said
    failure = report["failures"][0]
    assert any("acknowledged keys missing" in v for v in failure["violations"]), said
    rerun = failure["rerun"]
    assert f"--seed {seed} --only" in rerun and "--plant nofsync" in rerun and "level=sync" in rerun
