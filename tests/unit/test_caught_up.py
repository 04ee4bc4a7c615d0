"""Caught-up partitions: a partition read to its end promises the wall clock minus its recent delays, never past
the newest event read, and nothing when it is behind, paused, idle or silent for longer than the delay window
(agents/caught_up.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

import agents.caught_up as caught_up
from agents.caught_up import CaughtUp
from agents.cursor import Refilled, RefilledMessage
from agents.ingest import MIN_PROMISE_DELAY_MS, ChannelState, raw_batch
from pipeline.clock import ManualClock
from pipeline.domain.eventtime import Punctuality
from pipeline.metrics import ingest_metrics
from pipeline.steps.bundles import read
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry

WINDOW = 10_000
T0 = 1_800_000_000_000


def test_punctuality_keeps_the_largest_delay_of_the_last_one_to_two_windows() -> None:
    seen = Punctuality(WINDOW)
    assert seen.delay(0, T0) is None
    seen.observe(0, T0, 300)
    seen.observe(0, T0 + 10, 120)
    assert seen.delay(0, T0 + 20) == 300
    seen.observe(0, T0 + WINDOW, 50)  # the next window: the previous one still counts
    assert seen.delay(0, T0 + WINDOW + 1) == 300
    assert seen.delay(0, T0 + 2 * WINDOW) == 50  # only the last window with arrivals
    assert seen.delay(0, T0 + 3 * WINDOW) is None  # nothing arrived lately: no promise at all
    assert seen.delay(1, T0) is None


class Consumer:
    def __init__(self, highwater: dict[int, int]) -> None:
        self.highwaters = highwater
        self._paused_partitions: set[TP] = set()

    def assignment(self) -> set[TP]:
        return {TP("web", p) for p in self.highwaters}

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp.partition]


class Ingest:
    def __init__(self) -> None:
        self.routed = 0

    async def route_channel(self, _channel: ChannelState) -> None:
        self.routed += 1


def _setup(monkeypatch: pytest.MonkeyPatch) -> tuple[CaughtUp, ChannelState, Consumer, Ingest, ManualClock, list[Any]]:
    sent: list[Any] = []

    async def publish_all(sends: Any, *_args: Any) -> None:
        sent.extend(value for _topic, items in sends for _key, value in items)

    monkeypatch.setattr(caught_up, "publish_all", publish_all)
    consumer = Consumer({0: 5, 1: 9})
    app = SimpleNamespace(rebalancing=False, consumer=consumer)
    step = SimpleNamespace(source_topic="web", channel="web", marks={0: T0 - 1_000, 1: T0 + 1_000})
    channel = ChannelState(cast(Any, step), punctuality=Punctuality(WINDOW))
    channel.cursor = cast(Any, SimpleNamespace(generation=0))
    channel.expected = {0: 5, 1: 7}  # partition 1 has unread messages
    for p in (0, 1):
        channel.punctuality.observe(p, T0, 250)
    ingest = Ingest()
    clock = ManualClock(T0)
    outputs = SimpleNamespace(links=object())
    check = CaughtUp(app, [channel], cast(Any, ingest), cast(Any, outputs), AvroCodec(FileSchemaRegistry()),
                     cast(Any, None), ingest_metrics(CollectorRegistry()), clock)  # fmt: skip
    return check, channel, consumer, ingest, clock, sent


def _marks(sent: list[Any]) -> list[tuple[str, int, bool]]:
    codec = AvroCodec(FileSchemaRegistry())
    return [(m.source, m.mark, m.idle) for value in sent for m in read(codec, b"", value)[1]]


def test_a_partition_read_to_its_end_promises_the_clock_minus_its_recent_delays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check, channel, _consumer, ingest, clock, sent = _setup(monkeypatch)
    asyncio.run(check.check())
    assert _marks(sent) == [("web/0", T0 - 250, False)]  # partition 1 is behind its high watermark
    assert channel.promised == {0: T0 - 250} and ingest.routed == 1  # the journey's promise follows
    sent.clear()
    asyncio.run(check.check())
    assert sent == []  # nothing new to promise at the same instant
    clock.advance(100)
    channel.step.marks[0] = T0 + 50  # an event moved the mark itself past what the clock allows
    asyncio.run(check.check())
    assert sent == []


def test_a_promise_never_passes_the_newest_event_read(monkeypatch: pytest.MonkeyPatch) -> None:
    check, channel, _consumer, _ingest, clock, sent = _setup(monkeypatch)
    channel.step.marks[1] = T0 - 600  # partition 1 is behind: the newest event read is this one
    asyncio.run(check.check())
    assert _marks(sent) == [("web/0", T0 - 600, False)]
    sent.clear()
    clock.advance(60_000)  # input finished: the wall clock goes on, the watermark stays with the events
    asyncio.run(check.check())
    assert sent == []


def test_no_promise_for_paused_idle_or_lately_silent_partitions_and_never_closer_than_the_minimum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    check, channel, consumer, _ingest, clock, sent = _setup(monkeypatch)
    consumer._paused_partitions.add(TP("web", 0))
    asyncio.run(check.check())
    assert sent == []
    consumer._paused_partitions.clear()
    channel.idle_links.add(0)
    asyncio.run(check.check())
    assert sent == []
    channel.idle_links.clear()
    channel.punctuality = Punctuality(WINDOW)
    channel.punctuality.observe(0, T0, 3)  # a very punctual producer still leaves room for messages in flight
    asyncio.run(check.check())
    assert _marks(sent) == [("web/0", T0 - MIN_PROMISE_DELAY_MS, False)]
    sent.clear()
    clock.advance(3 * WINDOW)  # silent for longer than the window: only the idle timeout lets it go now
    asyncio.run(check.check())
    assert sent == [] and channel.promised[0] == T0 - MIN_PROMISE_DELAY_MS


def test_a_rebalance_forgets_the_promises(monkeypatch: pytest.MonkeyPatch) -> None:
    check, channel, _consumer, _ingest, _clock, _sent = _setup(monkeypatch)
    asyncio.run(check.check())
    assert channel.promised
    channel.cursor = cast(Any, SimpleNamespace(generation=1))
    channel.step.rebalanced = lambda: None
    asyncio.run(check.check())
    assert channel.promised == {}


def test_a_batch_takes_each_message_s_arrival_from_faust_s_stamp_and_a_refilled_one_arrives_with_the_batch() -> None:
    faust_event = SimpleNamespace(message=SimpleNamespace(key=b"k", value=b"v", partition=1, offset=7, time_in=99.5))
    refilled = Refilled(RefilledMessage(1, 6, b"k", b"v"))  # read from the broker to fill a hole: no stamp
    batch = raw_batch([refilled, faust_event], now_ms=T0, monotonic_s=100.0)
    assert [(m.offset, m.arrived_ms) for m in batch] == [(6, T0), (7, T0 - 500)]
