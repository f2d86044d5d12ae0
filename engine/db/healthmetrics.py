"""The health figures (``health.py``) as Prometheus metric families: what the write
endpoint's ``/metrics`` serves and the textfile node_exporter reads. Apart from
``health.py`` so that reading the figures does not load the Prometheus client."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.db.health import TEXTFILE, DatabaseHealth
from engine.io.fileio import IO


def families(healths: list[DatabaseHealth], now: float | None = None) -> list[Metric]:
    """The figures as Prometheus gauges (``tsadmin_`` prefixed, see the README's list)."""
    now = time.time() if now is None else now
    db, rep, bak = ["database"], ["database", "replica"], ["database", "store", "kind"]
    wal_bytes = GaugeMetricFamily("tsadmin_wal_bytes", "Bytes in the WAL files", labels=db)
    checkpoint_at = GaugeMetricFamily(
        "tsadmin_last_checkpoint_timestamp_seconds",
        "When the last checkpoint wrote the manifest (unix seconds)",
        labels=db,
    )
    checkpoint_age = GaugeMetricFamily(
        "tsadmin_checkpoint_age_seconds", "Seconds since the last checkpoint", labels=db
    )
    behind = GaugeMetricFamily(
        "tsadmin_replica_behind_records",
        "LSNs committed and not yet confirmed by the replica store",
        labels=rep,
    )
    lag = GaugeMetricFamily(
        "tsadmin_replica_lag_seconds",
        "Age of the oldest commit the replica store has not confirmed (0: it holds all)",
        labels=rep,
    )
    shipped = GaugeMetricFamily(
        "tsadmin_replica_shipped_commit_timestamp_seconds",
        "Commit time of the newest transaction the replica store confirmed",
        labels=rep,
    )
    backup_at = GaugeMetricFamily(
        "tsadmin_last_backup_timestamp_seconds",
        "When the last successful backup to the store finished (unix seconds)",
        labels=bak,
    )
    backup_age = GaugeMetricFamily(
        "tsadmin_backup_age_seconds", "Seconds since the last successful backup", labels=bak
    )
    rejected = CounterMetricFamily(
        "tsadmin_ingest_rejected_rows",
        "Rows ingest runs rejected, by kind of reason",
        labels=["database", "reason"],
    )
    for h in healths:
        for reason, n in h.rejected.items():
            rejected.add_metric([h.database, reason], n)
        wal_bytes.add_metric([h.database], h.wal_bytes)
        checkpoint_at.add_metric([h.database], h.last_checkpoint_at)
        checkpoint_age.add_metric([h.database], max(0.0, now - h.last_checkpoint_at))
        for r in h.replicas:
            behind.add_metric([h.database, r.url], r.behind_records)
            lag.add_metric([h.database, r.url], r.lag_seconds)
            if r.shipped_commit_at is not None:
                shipped.add_metric([h.database, r.url], r.shipped_commit_at)
        for b in h.backups:
            backup_at.add_metric([h.database, b.store, b.kind], b.at)
            backup_age.add_metric([h.database, b.store, b.kind], max(0.0, now - b.at))
    return [
        wal_bytes,
        checkpoint_at,
        checkpoint_age,
        behind,
        lag,
        shipped,
        backup_at,
        backup_age,
        rejected,
    ]


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def write_textfile(directory: Path, healths: list[DatabaseHealth]) -> Path:
    """The figures in Prometheus' text format as ``directory/tsadmin.prom``, replaced
    atomically (node_exporter's textfile collector must never read half a file)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families(healths)))
    path = directory / TEXTFILE
    IO.write_file_atomic(path, generate_latest(registry), "metrics.textfile")
    return path
