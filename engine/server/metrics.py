"""What the write endpoint counts: for ``/metrics`` (Prometheus text format) and for
the log line it writes every interval.

One set of counters, :class:`ServerStats`, is the only bookkeeping; Prometheus
reads it through a collector at scrape time (``prometheus-client`` renders the
format), and the log line reads the difference between two snapshots.

Metrics (all ``tsadmin_`` prefixed):

- ``http_requests_total{endpoint,code}``: requests answered, by endpoint and status;
- ``write_rows_total{database}``: points committed;
- ``write_refused_lines_total{database,reason}``: lines refused (partial writes), by
  kind of reason (``beyond retention``, ``bad line``... as ``ingest`` counts them);
- ``commits_total{database}``: transactions, each holding one or more requests;
- ``commit_requests_total{database}``: requests those transactions held;
- ``commit_seconds{database}``: histogram, from a group's taking to its commit;
- ``wal_fsyncs_total{database}``: WAL fsyncs (``/ commits_total``: fsyncs per commit);
- ``unflushed_bytes{database}``: bytes (in memory) of rows committed and not yet
  checkpointed;
- what operators alert on, as ``db stats`` and ``tsadmin metrics --textfile`` give
  them (:mod:`engine.db.health`): ``wal_bytes``, ``last_checkpoint_timestamp_seconds``,
  ``checkpoint_age_seconds``, ``replica_behind_records``, ``replica_lag_seconds``
  (age of the oldest commit the store has not confirmed),
  ``replica_shipped_commit_timestamp_seconds``, ``last_backup_timestamp_seconds`` and
  ``backup_age_seconds`` per store;
- ``replica_reseeds_total{database,replica}``: fresh snapshots uploaded because the
  WAL a replica needed was gone (its standbys rebuild);
- ``replica_up{database,replica}``: 0 while the store refuses or does not answer.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from engine.db import health, healthmetrics
from engine.db.database import Database
from engine.server.batcher import GroupStats

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class _Commits:
    rows: int = 0
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    commits: int = 0
    requests: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))


class ServerStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._commits: dict[str, _Commits] = {}
        self._recent: list[float] = []  # commit latencies since the last summary

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self._requests[(endpoint, status)] += 1

    def commit(self, database: str, group: GroupStats) -> None:
        with self._lock:
            c = self._commits.setdefault(database, _Commits())
            c.refused += group.refused
            c.reasons.update(group.refused_reasons)
            if not group.rows:  # every line refused: no transaction
                return
            c.rows += group.rows
            c.commits += 1
            c.requests += group.requests
            c.seconds += group.seconds
            c.buckets[bisect.bisect_left(BUCKETS, group.seconds)] += 1
            if len(self._recent) < 1_000_000:
                self._recent.append(group.seconds)

    def snapshot(self) -> dict[str, Any]:
        """Totals since start: requests by status class, rows, refused lines, commits."""
        with self._lock:
            commits = list(self._commits.values())
            statuses = Counter({code: n for (_, code), n in self._requests.items()})
        return {
            "requests": sum(statuses.values()),
            "busy": statuses[503],
            "client_errors": sum(n for code, n in statuses.items() if 400 <= code < 500),
            "server_errors": sum(n for code, n in statuses.items() if code >= 500 and code != 503),
            "rows": sum(c.rows for c in commits),
            "refused_lines": sum(c.refused for c in commits),
            "commits": sum(c.commits for c in commits),
            "committed_requests": sum(c.requests for c in commits),
        }

    def counts(self) -> tuple[dict[tuple[str, int], int], dict[str, _Commits]]:
        """Copies of the request counts and of each database's commit counters."""
        with self._lock:
            return dict(self._requests), {n: _copy(c) for n, c in self._commits.items()}

    def take_latencies(self) -> list[float]:
        with self._lock:
            recent, self._recent = self._recent, []
        return recent

    def collector(self, databases: Callable[[], dict[str, Database]]) -> Collector:
        return _Collector(self, databases)

    def registry(self, databases: Callable[[], dict[str, Database]]) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=True)
        registry.register(self.collector(databases))
        return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def interval_summary(
    before: dict[str, Any],
    after: dict[str, Any],
    seconds: float,
    latencies: list[float],
    fsyncs: int,
) -> dict[str, Any]:
    """The log line's figures for one interval: rates and the commit latency."""
    delta = {key: after[key] - before[key] for key in after}
    commits = delta["commits"]
    latencies = sorted(latencies)
    return {
        "event": "stats",
        "seconds": round(seconds, 1),
        "requests_per_s": round(delta["requests"] / seconds, 1) if seconds else 0.0,
        "rows_per_s": round(delta["rows"] / seconds, 1) if seconds else 0.0,
        "rows": delta["rows"],
        "refused_lines": delta["refused_lines"],
        "busy": delta["busy"],
        "client_errors": delta["client_errors"],
        "server_errors": delta["server_errors"],
        "commits": commits,
        "requests_per_commit": round(delta["committed_requests"] / commits, 2) if commits else 0,
        "fsyncs_per_commit": round(fsyncs / commits, 2) if commits else 0,
        "commit_p50_ms": round(_quantile(latencies, 0.5) * 1e3, 2),
        "commit_p99_ms": round(_quantile(latencies, 0.99) * 1e3, 2),
    }


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Collector(Collector):
    def __init__(self, stats: ServerStats, databases: Callable[[], dict[str, Database]]) -> None:
        self.stats = stats
        self.databases = databases

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        requests, commits = stats.counts()
        http = CounterMetricFamily(
            "tsadmin_http_requests", "HTTP requests answered", labels=["endpoint", "code"]
        )
        for (endpoint, code), n in sorted(requests.items()):
            http.add_metric([endpoint, str(code)], n)
        yield http
        families = {
            "rows": CounterMetricFamily(
                "tsadmin_write_rows", "Points committed", labels=["database"]
            ),
            "commits": CounterMetricFamily(
                "tsadmin_commits", "Transactions committed", labels=["database"]
            ),
            "requests": CounterMetricFamily(
                "tsadmin_commit_requests", "Requests the transactions held", labels=["database"]
            ),
        }
        latency = HistogramMetricFamily(
            "tsadmin_commit_seconds",
            "Time from a group's taking to its commit",
            labels=["database"],
        )
        refused = CounterMetricFamily(
            "tsadmin_write_refused_lines",
            "Lines refused, by kind of reason",
            labels=["database", "reason"],
        )
        for name, c in sorted(commits.items()):
            for key, family in families.items():
                family.add_metric([name], getattr(c, key))
            for reason, n in sorted(c.reasons.items()):
                refused.add_metric([name, reason], n)
            cumulative, running = [], 0
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], c.buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            latency.add_metric([name], cumulative, sum_value=c.seconds)
        yield from families.values()
        yield refused
        yield latency
        fsyncs = CounterMetricFamily("tsadmin_wal_fsyncs", "WAL fsyncs", labels=["database"])
        unflushed = GaugeMetricFamily(
            "tsadmin_unflushed_bytes",
            "Bytes (in memory, as Arrow holds them) of rows committed and not yet checkpointed",
            labels=["database"],
        )
        for name, db in sorted(self.databases().items()):
            fsyncs.add_metric([name], db.fsync_count)
            unflushed.add_metric([name], db.pending_bytes)
        yield fsyncs
        yield unflushed
        yield from _replica_families(self.databases())


def _replica_families(databases: dict[str, Database]) -> Iterator[Metric]:
    labels = ["database", "replica"]
    healths = [
        health.database_health(db.dir, name, db.last_lsn) for name, db in sorted(databases.items())
    ]
    yield from healthmetrics.families(healths)
    reseeds = CounterMetricFamily(
        "tsadmin_replica_reseeds",
        "Fresh snapshots uploaded because the WAL a replica needed was gone",
        labels=labels,
    )
    up = GaugeMetricFamily(
        "tsadmin_replica_up", "1 while the replica store answers, else 0", labels=labels
    )
    for name, db in sorted(databases.items()):
        rep = db.replication
        if rep is None:
            continue
        for item in rep.progress():
            key = [name, item.url]
            reseeds.add_metric(key, item.reseeds)
            up.add_metric(key, 0 if item.error else 1)
    yield from (reseeds, up)


def _copy(c: _Commits) -> _Commits:
    return _Commits(
        c.rows, c.refused, Counter(c.reasons), c.commits, c.requests, c.seconds, list(c.buckets)
    )
