"""Prometheus metrics of the warehouse sink (registry injected, like every omnistream process).

Labels are table names (a fixed set from ``TABLES``) and operation names, never ids. File sizes and the
snapshot age are computed when scraped, so they are right even while the sink is idle or stuck in a retry.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.metrics import BATCH_BUCKETS, ChildCache

_NS = "omnistream"


@dataclass(frozen=True)
class SinkMetrics:
    """What the sink exports (names as scraped, with the ``omnistream_`` namespace)."""

    rows: ChildCache[Counter]  # sink_rows_total{table}: rows inserted or updated (ignored duplicates excluded)
    messages: ChildCache[Counter]  # sink_messages_total{table}: messages consumed into committed batches
    rejects: Counter  # sink_rejects_total: undecodable messages stored in _sink_rejects
    replayed: Counter  # sink_replayed_messages_total: skipped because their offset was already committed
    commit_seconds: Histogram  # sink_batch_commit_seconds: one batch transaction, BEGIN to COMMIT
    last_commit: Gauge  # sink_last_commit_timestamp_seconds
    snapshot_seconds: Histogram  # snapshot_publish_seconds
    retries: ChildCache[Counter]  # sink_infra_retries_total{operation}
    snapshot_age: Gauge  # snapshot_age_seconds
    file_bytes: Gauge  # duckdb_file_bytes
    wal_bytes: Gauge  # duckdb_wal_bytes

    def watch_files(self, db_path: Path) -> None:
        """Export the live database's file and WAL sizes (0 when absent)."""
        self.file_bytes.set_function(_size_of(db_path))
        self.wal_bytes.set_function(_size_of(Path(f"{db_path}.wal")))

    def watch_snapshot_age(self, age_s: Callable[[], float | None]) -> None:
        """Export ``age_s()`` (NaN while there has never been a snapshot)."""
        self.snapshot_age.set_function(lambda: _nan_if_none(age_s()))


def sink_metrics(registry: CollectorRegistry) -> SinkMetrics:
    """Create the sink metrics on ``registry``."""
    return SinkMetrics(
        rows=ChildCache(
            Counter("sink_rows", "Rows inserted or updated in DuckDB", ["table"], namespace=_NS, registry=registry)
        ),
        messages=ChildCache(
            Counter(
                "sink_messages",
                "Messages consumed into committed batches",
                ["table"],
                namespace=_NS,
                registry=registry,
            )
        ),
        rejects=Counter(
            "sink_rejects",
            "Messages the sink could not decode (kept in _sink_rejects)",
            namespace=_NS,
            registry=registry,
        ),
        replayed=Counter(
            "sink_replayed_messages",
            "Messages skipped because their offset was already committed in DuckDB",
            namespace=_NS,
            registry=registry,
        ),
        commit_seconds=Histogram(
            "sink_batch_commit_seconds",
            "Wall time of one batch transaction (rows + offsets) in DuckDB",
            buckets=BATCH_BUCKETS,
            namespace=_NS,
            registry=registry,
        ),
        last_commit=Gauge(
            "sink_last_commit_timestamp_seconds",
            "Unix time of the last committed batch",
            namespace=_NS,
            registry=registry,
        ),
        snapshot_seconds=Histogram(
            "snapshot_publish_seconds",
            "Wall time to checkpoint, copy and atomically replace the read-only snapshot",
            buckets=BATCH_BUCKETS,
            namespace=_NS,
            registry=registry,
        ),
        retries=ChildCache(
            Counter(
                "sink_infra_retries",
                "DuckDB operations retried after an infrastructure error",
                ["operation"],
                namespace=_NS,
                registry=registry,
            )
        ),
        snapshot_age=Gauge(
            "snapshot_age_seconds",
            "How far the read-only snapshot may be behind the live warehouse",
            namespace=_NS,
            registry=registry,
        ),
        file_bytes=Gauge("duckdb_file_bytes", "Size of the live DuckDB file", namespace=_NS, registry=registry),
        wal_bytes=Gauge(
            "duckdb_wal_bytes", "Size of the live DuckDB write-ahead log", namespace=_NS, registry=registry
        ),
    )


def _size_of(path: Path) -> Callable[[], float]:
    def size() -> float:
        try:
            return float(os.stat(path).st_size)
        except FileNotFoundError:
            return 0.0

    return size


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value
