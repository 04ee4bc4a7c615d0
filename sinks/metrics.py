"""Prometheus metrics of the warehouse sink (registry injected, like every omnistream process).

Labels are table names (a fixed set from ``TABLES``) and operation names, never ids. File sizes and the
snapshot age are computed when scraped, so they are right even while the sink is idle or stuck in a retry.

The registry lives in the consumer process (its /metrics server); the DuckDB writer may run in another
process. So the writer does not touch metrics: :class:`SinkMeter` records them from what the writer reports
(``WriteResult``, publish results, retries as they happen), in whichever process drives the writer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pipeline.clock import Clock, SystemClock
from pipeline.metrics import BATCH_BUCKETS, ChildCache
from sinks.contract import WriteResult

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
    lag: ChildCache[Gauge]  # sink_lag_messages{table}: messages on the topic not yet stored in DuckDB

    def watch_files(self, db_path: Path) -> None:
        """Export the live database's file and WAL sizes (0 when absent)."""
        self.file_bytes.set_function(_size_of(db_path))
        self.wal_bytes.set_function(_size_of(Path(f"{db_path}.wal")))

    def watch_snapshot_age(self, age_s: Callable[[], float | None]) -> None:
        """Export ``age_s()`` (NaN while there has never been a snapshot)."""
        self.snapshot_age.set_function(lambda: _nan_if_none(age_s()))


#: The DuckDB operations the writer retries (the ``operation`` label of ``sink_infra_retries_total``).
SINK_OPERATIONS = ("open", "write", "snapshot")


def sink_metrics(registry: CollectorRegistry) -> SinkMetrics:
    """Create the sink metrics on ``registry`` (the retry counters at 0 for every operation, so that a rate over
    them has a series before the first retry)."""
    metrics = SinkMetrics(
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
        lag=ChildCache(
            Gauge(
                "sink_lag_messages",
                "Messages on a table's topic not yet stored in DuckDB (end offsets minus stored offsets)",
                ["table"],
                namespace=_NS,
                registry=registry,
            )
        ),
    )
    for operation in SINK_OPERATIONS:
        metrics.retries.get(operation)
    return metrics


class SinkMeter:
    """Records :class:`SinkMetrics` from what a writer of the live file ``db_path`` reports.

    Call ``opened`` before the writer opens the file, ``wrote`` with each ``WriteResult``, ``retried`` for
    each retried operation and ``published`` after each publish. The snapshot age is "now minus the last time
    the snapshot was known equal to the live file": the start of the last publish (or the snapshot's mtime
    when the writer opened), by ``clock``.
    """

    def __init__(self, metrics: SinkMetrics, db_path: Path, snapshot_path: Path, clock: Clock | None = None) -> None:
        self.metrics = metrics
        self._snapshot_path = snapshot_path
        self._clock = clock or SystemClock()
        self._synced_ms: int | None = None
        metrics.watch_files(db_path)
        metrics.watch_snapshot_age(self.snapshot_age_s)

    def opened(self) -> None:
        if self._synced_ms is None and self._snapshot_path.is_file():
            self._synced_ms = int(self._snapshot_path.stat().st_mtime * 1000)

    def retried(self, operation: str) -> None:
        self.metrics.retries.get(operation).inc()

    def wrote(self, result: WriteResult) -> None:
        m = self.metrics
        for name, n in result.rows_written.items():
            m.rows.get(name).inc(n)
        for name, n in result.messages.items():
            m.messages.get(name).inc(n)
        if result.rejects:
            m.rejects.inc(result.rejects)
        if result.replayed:
            m.replayed.inc(result.replayed)
        m.commit_seconds.observe(result.commit_seconds)
        m.last_commit.set(self._clock.now_ms() / 1000)

    def published(self, started_ms: int, copied: bool, seconds: float) -> None:
        """A publish that started at ``started_ms`` succeeded (``copied``: a new snapshot was written)."""
        self._synced_ms = started_ms
        if copied:
            self.metrics.snapshot_seconds.observe(seconds)

    def now_ms(self) -> int:
        return self._clock.now_ms()

    def snapshot_age_s(self) -> float | None:
        """Seconds since the snapshot was last known equal to the live file; None before the first one."""
        if self._synced_ms is None:
            return None
        return max(0.0, (self._clock.now_ms() - self._synced_ms) / 1000)


def _size_of(path: Path) -> Callable[[], float]:
    def size() -> float:
        try:
            return float(os.stat(path).st_size)
        except FileNotFoundError:
            return 0.0

    return size


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value
