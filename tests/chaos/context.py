"""What every trial works with: its random choices, its directory, the worker's S3
server and fault proxy, the ledger, and what it found."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.chaos.ledger import Ledger
from tests.chaos.proxy import FaultProxy

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
