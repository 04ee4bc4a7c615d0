"""Progress of input partitions consumed to their end: a quiet partition need not hold results back until its
next event when its producer has shown it writes in near real time (docs/time.md, caught-up partitions).

A partition's mark moves only with its events, so every watermark waits for the next event of the sparsest
partition: at 1,000 events/s that wait was most of the end-to-end latency (bench/RESULTS.md). When a partition
has been read to its end, and every event it delivered in the last idle timeout or two reached this worker
within ``D`` of its event time (``ChannelState.punctuality``), its worker promises ``now - D``: a later event
would have to be later than every recent one. The promise goes to the identity writer (with the link events)
and to the journey (through a routing pass, which never promises more than the held events allow).

Guarantees: a promise never exceeds ``now - MIN_PROMISE_DELAY_MS`` nor the newest event time this worker has
read on any input partition, never goes back, and is made only for a partition this worker owns, fetches (not
paused), has read to its end (its fetched high watermark; Faust's consumer fetches in a thread of its own, so a
busy event loop delays the reading, not the high watermark) and has not declared idle. Not guaranteed: that the
producer keeps its pace; an event later than the promise is a straggler, exactly like one after idleness
(applied at its customer's clock, counted in ``omnistream_journey_events_behind_total``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.ingest import MIN_PROMISE_DELAY_MS, ChannelState, Ingest, IngestOutputs
from agents.publish import RetryPolicy, publish_all
from pipeline.clock import Clock
from pipeline.domain.eventtime import NEVER
from pipeline.metrics import IngestMetrics
from pipeline.steps.bundles import Mark, bundle
from pipeline.steps.journey import input_source
from schemas.codec import AvroCodec


class CaughtUp:
    """Promises progress for caught-up input partitions; run :meth:`check` from a short periodic timer."""

    def __init__(
        self, app: Any, channels: Sequence[ChannelState], ingest: Ingest, outputs: IngestOutputs, codec: AvroCodec,
        retry: RetryPolicy, metrics: IngestMetrics, clock: Clock,
    ) -> None:  # fmt: skip
        self._app = app
        self._channels = {c.step.source_topic: c for c in channels}
        self._ingest = ingest
        self._outputs = outputs
        self._codec = codec
        self._retry = retry
        self._metrics = metrics
        self._clock = clock

    async def check(self) -> None:
        if self._app.rebalancing:
            return
        consumer = self._app.consumer
        mine: dict[str, list[Any]] = {}
        for tp in consumer.assignment():
            if tp.topic in self._channels:
                mine.setdefault(tp.topic, []).append(tp)
        # Never past the newest event read here: the watermark follows events, not the wall clock, so timers
        # still wait for events and a finished input's last watermark stays just past its last event (as with
        # idleness), whenever the input was read.
        newest = max((m for c in self._channels.values() for m in c.step.marks.values()), default=NEVER)
        for topic, tps in mine.items():
            channel = self._channels[topic]
            if channel.lock.locked():  # a batch or routing pass is on it, and sends its marks: try next time
                continue
            async with channel.lock:
                await self._check(consumer, channel, sorted(tps), newest)

    async def _check(self, consumer: Any, channel: ChannelState, tps: list[Any], newest: int) -> None:
        if channel.cursor is None:
            return
        channel.follow(channel.cursor.generation)
        now_ms = self._clock.now_ms()
        marks: list[Mark] = []
        # A paused partition (agents/align.py) is not fetched: its high watermark is stale.
        paused: set[Any] = getattr(consumer, "_paused_partitions", set())
        for tp in tps:
            p = tp.partition
            if p in channel.idle_links or p in channel.idle_resolved or p not in channel.expected or tp in paused:
                continue
            delay = channel.punctuality.delay(p, now_ms)
            if delay is None:  # nothing arrived lately: only the idle timeout may let it go
                continue
            try:
                highwater = consumer.highwater(tp)
            except AssertionError:  # revoked meanwhile (a rebalance started)
                return
            if highwater is None or highwater < 0 or channel.expected[p] < highwater:
                continue  # not read to its end: its own events will move its mark
            promise = min(now_ms - max(delay, MIN_PROMISE_DELAY_MS), newest)
            if promise > max(channel.step.marks.get(p, NEVER), channel.promised.get(p, NEVER)):
                channel.promised[p] = promise
                marks.append(Mark(input_source(tp.topic, p), promise))
        if not marks:
            return
        links = bundle(self._codec, (), lambda _key: 0, 1, marks)
        await publish_all([(self._outputs.links, links)], self._retry, self._metrics.infra_retries)
        await self._ingest.route_channel(channel)  # the journey's promise follows (never above what is held)
