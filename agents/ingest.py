"""Ingest agents: one Faust agent per channel topic, feeding micro-batches through ``IngestStep`` and routing
the canonical events through identity resolution.

The agent only moves data. Per batch it publishes canonical events (customer-events), failed events, and the
link events with the progress marks of the batch's input partitions (to the single identity writer, which
applies links in event-time order). The other events are *held* until the identity writer's watermark, as seen
by this worker's replica, has passed their positions: then every link that precedes them in event time is in
the replica, and they are routed to the profile they belong to at their position, exactly
(:func:`pipeline.domain.identity.resolve_at`). Each event is routed as soon as the watermark has passed it, with
the progress its partition can then promise (pipeline/steps/held.py, pipeline/steps/bundles.py); a batch's
inputs are acknowledged once all of it is routed, in the order taken, and each partition's mark is recorded for
the commit (agents/commit_marks.py). Concurrency is 1 per agent on purpose:
Faust with concurrency > 1 can commit past an in-flight event.

:class:`IdleSources` declares an input partition idle when it has been consumed to its end and nothing arrived
for the idle timeout, so that a quiet partition stops holding the watermarks back (docs/time.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agents.batching import PARTITIONER
from agents.commit_marks import CommitMarks, fetch_marks
from agents.cursor import Cursor, faust_cursor
from agents.delivery import BatchDelivery
from agents.identity import wait_for_replica
from agents.publish import EXIT_INFRA, EXIT_UPSTREAM_BROKEN, RetryPolicy, fatal, publish_all
from pipeline.clock import Clock, SystemClock
from pipeline.domain.eventtime import NEVER, Punctuality
from pipeline.domain.guard import UpstreamBrokenError
from pipeline.identity.replica import AssignmentReplica
from pipeline.metrics import IngestMetrics
from pipeline.privacy.linklog import link_keys
from pipeline.steps.bundles import Mark, bundle
from pipeline.steps.held import Held, HeldBatches
from pipeline.steps.identity import IdentityRouter
from pipeline.steps.ingest import IngestStep, RawMessage
from pipeline.steps.journey import input_source
from pipeline.topic_reader import read_range
from pipeline.topic_replica import CompactedReplica
from schemas.codec import AvroCodec
from schemas.errors import RegistryUnavailableError

log = logging.getLogger(__name__)
#: Arrival delays are remembered for one to two of these windows; the worker uses its idle timeout: a producer
#: that uploads in bursts more often than that shows its delays in every window, and one that bursts less often
#: has its partition declared idle between bursts anyway (docs/time.md).
PUNCTUALITY_WINDOW_MS = 10_000
#: The least a caught-up partition keeps between its promise and the wall clock, whatever its delays: a message
#: may be on its way from the producer to this worker's fetch (linger, network) without any delay seen yet.
MIN_PROMISE_DELAY_MS = 100


@dataclass(frozen=True)
class IngestOutputs:
    """The Faust topics an ingest agent publishes to, and the partition count of resolved-events."""

    canonical: Any
    failed: Any
    resolved: Any
    links: Any
    partitions: int


@dataclass(frozen=True)
class Committed:
    """Where the group's committed offsets and marks are read from, and where marks are recorded for commits."""

    bootstrap: str
    group_id: str
    client_config: Mapping[str, Any]
    marks: CommitMarks


@dataclass
class ChannelState:
    """Per channel: the held batches, the lock a batch, a routing pass and an idle check share, and per
    partition where its next batch must start, when its last message was processed, and whether it was
    declared idle to the identity writer (links) and to the journey (resolved); how late each partition's events
    arrive, and the progress promised for a partition consumed to its end (:class:`CaughtUp`)."""

    step: IngestStep
    stream: Any = None
    cursor: Cursor | None = None
    generation: int = 0  # the cursor's generation that ``expected`` belongs to
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    held: HeldBatches = field(default_factory=HeldBatches)
    routed_at: int = NEVER  # the replica watermark of the last routing pass
    expected: dict[int, int] = field(default_factory=dict)
    seen: dict[int, float] = field(default_factory=dict)
    idle_links: set[int] = field(default_factory=set)
    idle_resolved: set[int] = field(default_factory=set)
    punctuality: Punctuality = field(default_factory=lambda: Punctuality(PUNCTUALITY_WINDOW_MS))
    promised: dict[int, int] = field(default_factory=dict)  # partition -> progress promised while caught up

    def active(self, partition: int) -> None:
        self.idle_links.discard(partition)
        self.idle_resolved.discard(partition)

    def follow(self, generation: int) -> None:
        """After a rebalance every partition resumes at its committed offset: forget where batches would start
        and which event ids were seen past it."""
        if generation > self.generation:
            self.expected.clear()
            self.promised.clear()
            self.step.rebalanced()
            # Held batches were admitted before: their partitions' owners process them again, and routing them
            # here would report progress for partitions this worker may no longer own.
            self.held.clear()
            self.generation = generation


def raw_batch(events: Sequence[Any], now_ms: int, monotonic_s: float | None = None) -> list[RawMessage]:
    """The step's input for a batch of Faust (or refilled) events, each with the time it reached the worker's
    streams: Faust's monitor stamps it (``time_in``, monotonic seconds), not when this batch started, as the take
    window and the batches before it are the worker's own delay. A message without a stamp arrived ``now_ms``."""
    shift = now_ms - (time.monotonic() if monotonic_s is None else monotonic_s) * 1000
    out = []
    for e in events:
        m = e.message
        arrived = now_ms if m.time_in is None else int(m.time_in * 1000 + shift)
        out.append(RawMessage(m.key, m.value, m.partition, m.offset, arrived))
    return out


async def restore_marks(channel: ChannelState, firsts: Mapping[int, int], committed: Committed) -> None:
    """Give the step each partition's mark as of the offset its batch starts at (from the commit metadata)."""
    step = channel.step
    need = [p for p, first in firsts.items() if channel.expected.get(p) != first]
    if not need:
        return
    found = await asyncio.get_running_loop().run_in_executor(
        None, fetch_marks, committed.bootstrap, committed.group_id, [(step.source_topic, p) for p in need],
        committed.client_config,
    )  # fmt: skip
    for p in need:
        offset, mark = found.get((step.source_topic, p), (None, None))
        if offset is not None and offset < firsts[p]:
            # Resuming after the committed offset (this worker went on consuming a partition it kept through a
            # rebalance, past what it had committed): carry the committed mark over the messages in between.
            between = await asyncio.get_running_loop().run_in_executor(
                None, read_range, committed.bootstrap, step.source_topic, p, offset, firsts[p], committed.client_config
            )  # fmt: skip
            raw = [RawMessage(k or None, v, p, o) for o, k, v in between]
            mark = step.replay_marks(p, NEVER if mark is None else mark, raw)
            log.info("%s[%d] resumes at %d, committed %d: progress mark carried over %d messages",
                     step.source_topic, p, firsts[p], offset, len(raw))  # fmt: skip
        elif offset is not None and offset > firsts[p]:
            log.warning("%s[%d] resumes at %d before the committed offset %d: its progress mark is unknown",
                        step.source_topic, p, firsts[p], offset)  # fmt: skip
            mark = None
        step.set_mark(p, NEVER if mark is None else mark)
        channel.active(p)


class Ingest:
    """The ingest agents of one worker and the routing of their held batches (see the module docstring)."""

    def __init__(
        self, router: IdentityRouter, replica: AssignmentReplica, codec: AvroCodec, outputs: IngestOutputs,
        committed: Committed, metrics: IngestMetrics, retry: RetryPolicy, clock: Clock | None = None,
        suppression: CompactedReplica | None = None,
    ) -> None:  # fmt: skip
        self._clock = clock or SystemClock()
        self._router = router
        self._replica = replica
        self._suppression = suppression
        self._codec = codec
        self._outputs = outputs
        self._committed = committed
        self._metrics = metrics
        self._retry = retry
        self._resolved_of = partial(PARTITIONER.partition, outputs.resolved.get_topic_name(),
                                    partitions=outputs.partitions)  # fmt: skip

    def register(
        self, app: Any, channel: ChannelState, batch_size: int, batch_within_s: float,
        delivery: BatchDelivery | None = None,
    ) -> Any:  # fmt: skip
        """Register the ingest agent of ``channel.step``'s channel on ``app``; returns the Faust agent. With a
        ``delivery`` (agents/delivery.py) the agent takes its batches from it; its stream only subscribes."""
        step = channel.step
        source = app.topic(
            step.source_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )
        batch_timer = self._metrics.batch_seconds.get(f"ingest:{step.channel}")

        c = self._committed
        cursor = channel.cursor = faust_cursor(app, step.source_topic, c.bootstrap, c.group_id, c.client_config)

        async def ingest(stream: Any) -> None:
            channel.stream = stream if delivery is None else delivery
            await wait_for_replica(self._replica)
            if self._suppression is not None:  # an erased person's events must not pass before the list is read
                await wait_for_replica(self._suppression)
            batches = (stream.noack_take(batch_size, within=batch_within_s) if delivery is None
                       else delivery.batches(stream, batch_size, batch_within_s))  # fmt: skip
            async for events in batches:
                started = time.perf_counter()
                admitted = await cursor.admit(events)
                async with channel.lock:
                    channel.follow(admitted.generation)
                    if admitted.events:
                        await self._take(channel, admitted.events, cursor, admitted.generation)
                        await self._route(channel)
                batch_timer.observe(time.perf_counter() - started)

        return app.agent(source, name=f"ingest-{step.channel}", concurrency=1)(ingest)

    async def route(self, channels: Sequence[ChannelState]) -> None:
        """Route what the replica's watermark allows (run from a short periodic timer)."""
        for channel in channels:
            if channel.held and channel.routed_at < self._replica.watermark:
                async with channel.lock:
                    await self._route(channel)

    async def _take(self, channel: ChannelState, events: list[Any], cursor: Cursor, generation: int) -> None:
        step = channel.step
        arrived_ms = self._clock.now_ms()
        batch = raw_batch(events, arrived_ms)
        firsts: dict[int, int] = {}
        for msg in batch:
            firsts.setdefault(msg.partition, msg.offset)
        await restore_marks(channel, firsts, self._committed)
        if generation != cursor.generation:  # revoked meanwhile: the new owner processes these again
            return
        try:
            out = step.process_batch(batch)
        except UpstreamBrokenError as exc:
            fatal(f"{step.source_topic}: {exc}", EXIT_UPSTREAM_BROKEN)
        except RegistryUnavailableError as exc:
            fatal(f"schema registry unavailable: {exc}", EXIT_INFRA)
        routed = self._router.split(out.records, [value for _key, value in out.canonical], out.positions)
        marks = [Mark(input_source(step.source_topic, p), mark) for p, (_end, mark) in out.ends.items()]
        sends = (
            (self._outputs.canonical, out.canonical),
            (self._outputs.failed, out.failed),
            (self._outputs.links, link_keys(bundle(self._codec, routed.links, lambda _key: 0, 1, marks))),
        )
        await publish_all(sends, self._retry, self._metrics.infra_retries)
        for p, delay in out.delays.items():
            channel.punctuality.observe(p, arrived_ms, delay)
        now = time.monotonic()
        for p, (end, _mark) in out.ends.items():
            channel.expected[p], channel.seen[p] = end, now
            channel.active(p)
        channel.held.append(Held(events, routed.records, routed.values, routed.positions, out.ends, generation))

    async def route_channel(self, channel: ChannelState) -> None:
        """One routing pass over ``channel`` (the caller holds its lock)."""
        await self._route(channel)

    async def _route(self, channel: ChannelState) -> None:
        """Route every held event the replica's watermark has passed, with the progress that allows
        (pipeline/steps/held.py); then acknowledge the batches complete at the head."""
        watermark = self._replica.watermark
        cursor = channel.cursor
        if cursor is None:  # not registered yet: nothing is held
            return
        channel.follow(cursor.generation)
        channel.routed_at = watermark
        out = channel.held.route(watermark)
        step = channel.step
        current = {p: max(step.marks.get(p, NEVER), channel.promised.get(p, NEVER)) for p in channel.expected}
        promised = channel.held.marks(watermark, current, every=bool(out.positions))
        if out.positions or promised:
            entries = self._router.route(out.records, out.values, out.positions)
            marks = [Mark(input_source(step.source_topic, p), mark) for p, mark in promised.items()]
            resolved = bundle(self._codec, entries, self._resolved_of, self._outputs.partitions, marks)
            await publish_all([(self._outputs.resolved, resolved)], self._retry, self._metrics.infra_retries)
        for held in out.complete:
            for p, (end, mark) in held.ends.items():
                self._committed.marks.record(step.source_topic, p, end, mark)
            await cursor.ack(channel.stream, held.events, held.generation)
        self._metrics.held.get(step.channel).set(channel.held.waiting())


class IdleSources:
    """Declares input partitions idle (see the module docstring); run :meth:`check` from a periodic timer."""

    def __init__(
        self, app: Any, channels: list[ChannelState], outputs: IngestOutputs, codec: AvroCodec, committed: Committed,
        idle_s: float, retry: RetryPolicy, metrics: IngestMetrics, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._app = app
        self._channels = {c.step.source_topic: c for c in channels}
        self._outputs = outputs
        self._codec = codec
        self._committed = committed
        self._idle_s = idle_s
        self._retry = retry
        self._metrics = metrics
        self._clock = clock

    async def check(self) -> None:
        """Declare every assigned input partition idle that is caught up and was silent for the idle timeout."""
        consumer = self._app.consumer
        if self._app.rebalancing:
            return
        assigned = sorted(consumer.assignment())
        for topic, channel in self._channels.items():
            mine = {tp.partition for tp in assigned if tp.topic == topic}
            # A partition that moved to another worker may come back after that worker declared it active.
            for p in [p for p in channel.idle_links | channel.idle_resolved if p not in mine]:
                channel.active(p)
        for tp in assigned:
            found = self._channels.get(tp.topic)
            if found is None:
                continue
            async with found.lock:
                await self._check(consumer, found, tp)

    async def _check(self, consumer: Any, channel: ChannelState, tp: Any) -> None:
        p = tp.partition
        now = self._clock()
        if p in channel.idle_resolved or channel.cursor is None:
            return
        channel.follow(channel.cursor.generation)
        if now - channel.seen.setdefault(p, now) < self._idle_s:
            return
        try:
            highwater = consumer.highwater(tp)
        except AssertionError:  # revoked meanwhile (a rebalance started)
            return
        if highwater is None or highwater < 0:
            return
        if p not in channel.expected:  # nothing consumed here yet: caught up if the due offset is the end
            due = await channel.cursor.due(p)
            if due < highwater:
                return
            await restore_marks(channel, {p: due}, self._committed)
            channel.expected[p] = due
        if channel.expected[p] < highwater:
            return
        # Towards the journey only once nothing of the partition is held: an idle mark there promises nothing more.
        resolved = not channel.held.holds(p)
        mark = await self._send_idle(channel, tp, links=p not in channel.idle_links, resolved=resolved)
        channel.idle_links.add(p)
        if resolved:
            channel.idle_resolved.add(p)
            log.info("%s[%d] idle at mark %d (consumed to offset %d)", tp.topic, p, mark, highwater)

    async def _send_idle(self, channel: ChannelState, tp: Any, links: bool, resolved: bool) -> int:
        mark = [Mark(input_source(tp.topic, tp.partition), channel.step.marks.get(tp.partition, NEVER), idle=True)]
        sends = []
        if links:
            sends.append((self._outputs.links, link_keys(bundle(self._codec, (), lambda _key: 0, 1, mark))))
        if resolved:
            sends.append((self._outputs.resolved, bundle(self._codec, (), lambda _key: 0, self._outputs.partitions,
                                                         mark)))  # fmt: skip
        await publish_all(sends, self._retry, self._metrics.infra_retries)
        return mark[0].mark
