"""agents/align.py against Faust's own consumer bookkeeping: pausing never cuts a fetched batch short, and
the check pauses exactly what runs ahead of the replica's watermark."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP
from prometheus_client import CollectorRegistry

from agents.align import Alignment
from pipeline.domain.eventtime import NEVER
from pipeline.metrics import ingest_metrics

HOUR = 3_600_000
WEB = [TP("web", p) for p in range(3)]


class Consumer:
    """Faust's partition bookkeeping (its own methods), without a broker."""

    _get_active_partitions: Any = FaustConsumer._get_active_partitions
    _set_active_tps: Any = FaustConsumer._set_active_tps
    pause_partitions: Any = FaustConsumer.pause_partitions

    def __init__(self) -> None:
        self._active_partitions: set[TP] | None = None
        self._paused_partitions: set[TP] = set()

    def assignment(self) -> set[TP]:
        return set(WEB)


def test_faust_pause_in_place_changes_the_set_a_batch_in_flight_is_handed_out_against() -> None:
    # Why agents/align.py does not call pause_partitions: this set is what Faust's fetch loop checks each
    # record of the batch it is handing out against.
    consumer = Consumer()
    in_flight = consumer._get_active_partitions()
    consumer.pause_partitions({WEB[0]})
    assert WEB[0] not in in_flight


class Synced:
    """The cursor's answer to "has this partition been read since the rebalance"."""

    def __init__(self) -> None:
        self.partitions = {0, 1, 2}

    def synced(self, partition: int) -> bool:
        return partition in self.partitions


def alignment(consumer: Consumer, marks: dict[int, int], watermark: int) -> tuple[Alignment, Any]:
    app = SimpleNamespace(rebalancing=False, in_recovery=False, consumer=consumer, consumer_generation_id=1)
    step = SimpleNamespace(source_topic="web", channel="web", marks=marks)
    replica = SimpleNamespace(watermark=watermark)
    registry = CollectorRegistry()
    cursor = Synced()
    align = Alignment(app, [(cast(Any, step), cast(Any, cursor))], cast(Any, replica), HOUR, ingest_metrics(registry))
    return align, (app, replica, registry, cursor)


def test_pauses_what_runs_ahead_without_touching_the_batch_in_flight_and_resumes_it_later() -> None:
    consumer = Consumer()
    marks = {0: 10 * HOUR, 1: 13 * HOUR, 2: 11 * HOUR}
    align, (app, replica, registry, _cursor) = alignment(consumer, marks, 10 * HOUR)
    in_flight = consumer._get_active_partitions()
    align.check()
    assert consumer._paused_partitions == set()  # the watermark seen at the rebalance may be stale
    replica.watermark += 1
    align.check()
    assert consumer._paused_partitions == {WEB[1]}
    assert consumer._get_active_partitions() == {WEB[0], WEB[2]}
    assert in_flight == set(WEB)  # the batch being handed out keeps its records of partition 1
    assert registry.get_sample_value("omnistream_ingest_paused_partitions", {"channel": "web"}) == 1
    replica.watermark = 12 * HOUR + 1  # the slow partitions caught up
    align.check()
    assert consumer._paused_partitions == set() and consumer._get_active_partitions() == set(WEB)
    marks[1] = 20 * HOUR
    align.check()
    assert consumer._paused_partitions == {WEB[1]}
    app.consumer_generation_id = 2  # a rebalance: nothing stays paused until the watermark moves again
    align.check()
    assert consumer._paused_partitions == set()
    replica.watermark += 1
    align.check()
    assert consumer._paused_partitions == {WEB[1]}


def test_nothing_changes_during_a_rebalance_before_the_watermark_is_known_or_before_a_partition_is_read() -> None:
    consumer = Consumer()
    align, (app, replica, _registry, cursor) = alignment(consumer, {0: 0, 1: 50 * HOUR}, NEVER)
    align.check()
    assert consumer._paused_partitions == set()
    replica.watermark, app.rebalancing = 0, True
    align.check()
    assert consumer._paused_partitions == set()
    app.rebalancing = False
    replica.watermark = 1
    cursor.partitions = {0}  # partition 1 not read since the rebalance: its mark is an earlier owner's
    align.check()
    assert consumer._paused_partitions == set()
    cursor.partitions = {0, 1}
    align.check()
    assert consumer._paused_partitions == {WEB[1]}
