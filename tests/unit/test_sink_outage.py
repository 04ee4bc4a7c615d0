"""The sink waits out a broker outage for its retry budget (injected clock), then stops with SinkInfraError."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError, KafkaTimeoutError

from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from sinks import synthetic as syn
from sinks.consumer import LoopConfig, SinkLoop
from sinks.contract import Batch, SinkInfraError
from sinks.tables import DEFAULT_TABLES, BoundTable, bind_tables


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class DownConsumer:
    """kafka-python's consumer while the broker is down (``up`` flips it)."""

    def __init__(self) -> None:
        self.up = False
        self.assigned: list[Any] = []

    def topics(self) -> set[str]:
        if not self.up:
            raise KafkaConnectionError("connection refused")
        return set()

    def assign(self, tps: list[Any]) -> None:
        self.assigned = tps


def loop(clock: Clock, factory: Any = None) -> SinkLoop:
    config = LoopConfig(bootstrap="127.0.0.1:1", retry_budget_s=300.0)
    extra = {} if factory is None else {"consumer_factory": factory}
    return SinkLoop(config, writer=None, tables=[], codec=AvroCodec(FileSchemaRegistry()), clock=clock, **extra)  # type: ignore[arg-type]


def test_a_metadata_outage_is_retried_within_the_budget_and_forgotten_once_the_broker_answers() -> None:
    clock, consumer = Clock(), DownConsumer()
    sink = loop(clock)
    for clock.now in (0.0, 100.0, 299.0):
        sink._refresh(consumer)  # logged and retried, not raised
    consumer.up = True
    clock.now = 299.5
    sink._refresh(consumer)
    consumer.up = False
    clock.now = 550.0  # a new outage: its own budget
    sink._refresh(consumer)
    clock.now = 851.0
    with pytest.raises(SinkInfraError, match="Kafka unavailable for 301s"):
        sink._refresh(consumer)


def test_a_broker_down_at_start_is_waited_for_and_then_stops_the_sink_after_the_budget() -> None:
    clock = Clock()
    attempts: list[float] = []

    def factory(**_config: Any) -> Any:
        attempts.append(clock.now)
        clock.now += 160.0  # each attempt (with its wait) takes this long
        raise KafkaTimeoutError("Unable to bootstrap")

    sink = loop(clock, factory)
    stop = threading.Event()
    with pytest.raises(SinkInfraError):
        sink._connect(stop)
    assert attempts == [0.0, 160.0]  # the second failure ends 320 s after the first attempt: over 300 s
    stop.set()
    assert loop(Clock(), factory)._connect(stop) is None  # a stop while waiting ends it without an error


def test_a_record_the_sink_cannot_turn_into_a_row_is_a_reject_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = FileSchemaRegistry()
    codec = AvroCodec(registry)
    table = bind_tables(["signals"], lambda name: name, registry)[0]
    sink = SinkLoop(LoopConfig(bootstrap="127.0.0.1:1"), writer=None, tables=[table], codec=codec)  # type: ignore[arg-type]
    good = codec.encode("signal", syn.signal("sig-1", "c:1", "cart_abandoned", 1_780_000_000_000))
    batch = Batch()

    def add(offset: int, value: bytes) -> None:
        sink._add(batch, table, SimpleNamespace(topic=table.topic, partition=0, offset=offset, value=value))

    for offset, value in enumerate((good, b"\x00\x00", good)):
        add(offset, value)
    assert len(batch.rows) == 2 and [r.offset for r in batch.rejects] == [1]

    def broken(_self: Any, _record: Any) -> Any:
        raise OverflowError("value out of range")

    monkeypatch.setattr(BoundTable, "to_row", broken)
    add(3, good)
    assert [r.offset for r in batch.rejects] == [1, 3] and "OverflowError" in batch.rejects[-1].error
    assert len(batch.rows) == 2 and batch.messages == 4


class OffsetsConsumer:
    """kafka-python's consumer answering end and beginning offsets (the only calls the lag report makes)."""

    def __init__(self, ends: dict[Any, int], starts: dict[Any, int]) -> None:
        self.ends, self.starts = ends, starts

    def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: self.ends[tp] for tp in tps}

    def beginning_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: self.starts[tp] for tp in tps}


def test_sink_lag_per_table_counts_from_the_offsets_stored_in_duckdb() -> None:
    from kafka import TopicPartition

    tables = bind_tables(DEFAULT_TABLES, str, FileSchemaRegistry())
    by_topic = {t.topic: t.name for t in tables}
    sessions, signals = (next(t for t in tables if t.name == name).topic for name in ("sessions", "signals"))
    reported: list[dict[str, int]] = []
    sink = SinkLoop(LoopConfig(bootstrap="127.0.0.1:1"), writer=None, tables=tables,  # type: ignore[arg-type]
                    codec=AvroCodec(FileSchemaRegistry()), on_lag=lambda lag: reported.append(dict(lag)))  # fmt: skip
    tps = [TopicPartition(sessions, 0), TopicPartition(sessions, 1), TopicPartition(signals, 0)]
    sink._assigned = set(tps)
    # sessions[0] stored up to 40 of 100; sessions[1] never stored, log starts at 10 (retention) and ends at 25;
    # signals[0] stored to its end.
    sink._stored = {(sessions, 0): 40, (signals, 0): 7}
    sink._report_lag(OffsetsConsumer({tps[0]: 100, tps[1]: 25, tps[2]: 7}, {tps[1]: 10}))
    assert reported[-1]["sessions"] == 60 + 15 and reported[-1]["signals"] == 0
    assert reported[-1].keys() == set(by_topic.values())  # every table has a value, 0 when nothing is behind


class PollDownConsumer:
    """kafka-python's consumer whose poll raises while the broker (and so its group coordinator) is away."""

    def __init__(self) -> None:
        self.up = False
        self.polls = 0

    def poll(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.polls += 1
        if not self.up:
            raise KafkaConnectionError("111 ECONNREFUSED")
        return {}


def test_a_poll_that_fails_during_a_broker_restart_is_an_outage_within_the_budget_not_a_crash() -> None:
    clock, consumer = Clock(), PollDownConsumer()
    config = LoopConfig(bootstrap="127.0.0.1:1", retry_budget_s=300.0, batch_max_ms=300)
    sink = SinkLoop(config, writer=None, tables=[], codec=AvroCodec(FileSchemaRegistry()), clock=clock)  # type: ignore[arg-type]
    sink._assigned = {("sessions", 0)}  # type: ignore[assignment]
    stop = threading.Event()
    batch = sink._collect(consumer, stop)  # broker down: an empty batch, no exception
    assert batch.messages == 0 and consumer.polls >= 1 and sink.readiness() == "Kafka does not answer"
    clock.now = 301.0
    with pytest.raises(SinkInfraError, match="Kafka unavailable for 301s"):
        sink._collect(consumer, stop)
