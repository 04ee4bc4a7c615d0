"""The consumer-lag collector and the Faust sensor update Prometheus metrics on a fresh registry."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.types import TP
from prometheus_client import CollectorRegistry

from pipeline.faust_sensor import ConsumerLagCollector, PrometheusSensor
from pipeline.metrics import consumer_metrics


class FakeConsumer:
    """The three things the collector reads from Faust's consumer."""

    def __init__(self, highwaters: dict[TP, int | None], committed: dict[TP, int]) -> None:
        self._hw = highwaters
        self._committed_offset: defaultdict[TP, int | None] = defaultdict(lambda: None, committed)

    def assignment(self) -> set[TP]:
        return set(self._hw)

    def highwater(self, tp: TP) -> int | None:
        return self._hw[tp]


def test_lag_is_highwater_minus_committed_for_owned_source_partitions_only() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLagCollector(["web"])
    registry.register(lag)
    assert registry.get_sample_value("omnistream_consumer_lag", {"topic": "web", "partition": "0"}) is None
    consumer = FakeConsumer(
        {TP("web", 0): 120, TP("web", 1): 40, TP("web", 2): None, TP("omnistream-journey-changelog", 0): 9},
        {TP("web", 0): 100},
    )
    lag.attach(consumer)
    assert registry.get_sample_value("omnistream_consumer_lag", {"topic": "web", "partition": "0"}) == 20
    assert registry.get_sample_value("omnistream_consumer_lag", {"topic": "web", "partition": "1"}) == 40
    assert lag.lags() == [("web", 0, 20), ("web", 1, 40)]  # unknown high-water and other topics left out


def test_a_consumer_that_fails_mid_rebalance_yields_an_empty_scrape_not_an_error() -> None:
    class Broken(FakeConsumer):
        def assignment(self) -> set[TP]:
            raise RuntimeError("rebalancing")

    lag = ConsumerLagCollector(["web"])
    lag.attach(Broken({}, {}))
    registry = CollectorRegistry()
    registry.register(lag)
    assert [f.samples for f in registry.collect()] == [[]]


def test_sensor_counts_rebalances_and_times_commits() -> None:
    registry = CollectorRegistry()
    lag = ConsumerLagCollector(["web"])
    sensor = PrometheusSensor(consumer_metrics(registry), lag)

    class App:
        consumer: Any = FakeConsumer({TP("web", 0): 5, TP("web", 1): 5}, {})

    state = sensor.on_rebalance_start(App())
    sensor.on_rebalance_end(App(), state)
    sensor.on_commit_completed(App.consumer, sensor.on_commit_initiated(App.consumer))
    assert registry.get_sample_value("omnistream_rebalances_total") == 1
    assert registry.get_sample_value("omnistream_rebalance_seconds_count") == 1
    assert registry.get_sample_value("omnistream_commit_seconds_count") == 1
    assert registry.get_sample_value("omnistream_assigned_partitions") == 2
    assert lag.lags() == [("web", 0, 5), ("web", 1, 5)]
