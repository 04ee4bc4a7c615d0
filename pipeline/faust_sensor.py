"""Faust's own consumer-group facts as Prometheus metrics: rebalances, commit latency, assignment, lag.

``PrometheusSensor`` is a Faust sensor (``app.sensors.add``): Faust calls it on every rebalance and every
offset commit, from its event loop; it only updates pre-created metrics there (no I/O, no label lookups).

``ConsumerLagCollector`` computes ``omnistream_consumer_lag{topic, partition}`` when Prometheus scrapes, from
the consumer's cached high-water marks and the offsets this worker last committed. Guarantees: one series
per partition of the listed source topics that this worker owns right now (revoked partitions vanish, so a
sum over workers never counts a partition twice for long); the value is what a commit right now would
still leave unprocessed. Not guaranteed: before the first fetch of a partition its high-water mark is
unknown and the partition is left out; the high-water mark is as fresh as the last fetch response (the
fetcher keeps polling while the agents work, so it is seconds old at most). It never raises into a scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterator
from typing import Any

import faust
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.metrics import ConsumerMetrics, consumer_metrics

log = logging.getLogger(__name__)


class ConsumerLagCollector(Collector):
    """Scrape-time consumer lag of the worker's source topics (see the module docstring)."""

    def __init__(self, topics: Collection[str]) -> None:
        self._topics = frozenset(topics)
        self._consumer: Any = None

    def attach(self, consumer: Any) -> None:
        """Start reporting ``consumer`` (a started Faust consumer)."""
        self._consumer = consumer

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "omnistream_consumer_lag",
            "Messages in a partition not yet committed by this worker (high-water mark - committed offset)",
            labels=["topic", "partition"],
        )
        for topic, partition, lag in self.lags():
            family.add_metric([topic, str(partition)], float(lag))
        yield family

    def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, lag) of every owned partition of the source topics with a known high-water mark."""
        consumer = self._consumer
        if consumer is None:
            return []
        out: list[tuple[str, int, int]] = []
        try:
            assigned = sorted(tp for tp in consumer.assignment() if tp.topic in self._topics)
            # Read from the HTTP server's thread: plain dict reads, no iteration over Faust's live dicts.
            committed_map = consumer._committed_offset
            for tp in assigned:
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                committed = committed_map.get(tp)
                out.append((tp.topic, tp.partition, max(0, int(highwater) - int(committed or 0))))
        except Exception as exc:  # a rebalance in progress: report nothing this scrape rather than fail it
            log.debug("consumer lag unavailable this scrape: %r", exc)
            return []
        return out


class PrometheusSensor(faust.Sensor):
    """Counts rebalances and times them and offset commits; keeps the lag collector's consumer current."""

    def __init__(self, metrics: ConsumerMetrics, lag: ConsumerLagCollector, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics
        self._lag = lag

    def on_rebalance_start(self, app: Any) -> dict[str, float]:
        self._metrics.rebalances.inc()
        return {"started": time.monotonic()}

    def on_rebalance_end(self, app: Any, state: dict[str, float]) -> None:
        self._metrics.rebalance_seconds.observe(time.monotonic() - state.get("started", time.monotonic()))
        consumer = app.consumer
        self._lag.attach(consumer)
        try:
            self._metrics.assigned_partitions.set(len(consumer.assignment()))
        except Exception as exc:  # assignment unavailable while the consumer restarts
            log.debug("assignment unavailable: %r", exc)

    def on_commit_initiated(self, consumer: Any) -> float:
        return time.perf_counter()

    def on_commit_completed(self, consumer: Any, state: float) -> None:
        self._metrics.commit_seconds.observe(time.perf_counter() - state)


def install_sensor(app: faust.App, registry: CollectorRegistry, source_topics: Collection[str]) -> PrometheusSensor:
    """Register the consumer metrics and the lag collector on ``registry`` and the sensor on ``app``."""
    lag = ConsumerLagCollector(source_topics)
    registry.register(lag)
    sensor = PrometheusSensor(consumer_metrics(registry), lag)
    app.sensors.add(sensor)
    return sensor
