"""Batch delivery of a source topic's messages from Faust's consumer to its agent, in lists.

Faust hands every fetched message to a per-partition handler of its conductor, which wraps it in an event, puts
it on the channel's queue, and the agent's stream takes it off again, calling sensors and setting the current
event per message. For the channel topics, where one Kafka message is one customer event, that path costs about
as much as the bare consumer does (bench/RESULTS.md: Faust ceiling against the batch-delivery ceiling). The
agents take their input in batches anyway, so :func:`install` replaces the conductor's handler for the
partitions of the listed topics with one that appends the message to the topic's :class:`BatchDelivery`.

Faust's consumer still fetches, tracks and commits. The handler admits a message as Faust's stream would: it
waits while flow control is off (a rebalance), drops a message fetched under an earlier consumer generation
(never acknowledged: a cursor reads it again as part of a hole, agents/cursor.py), tracks it for
acknowledgement and lets the sensors stamp its arrival (``time_in``). A buffer over ``max_buffer`` messages
pauses fetching of the partitions it holds (Faust's own back-pressure call), until it is half empty.

Guarantees: a partition's messages come out in the order the consumer delivered them; a message is acknowledged
only through :meth:`BatchDelivery.ack`. Not guaranteed: gapless delivery around a rebalance (the cursor's job).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

Handler = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Delivered:
    """One message as the agents read it (``event.message``, like a Faust event)."""

    message: Any


class BatchDelivery:
    """The buffer of one topic between Faust's consumer and the agent that takes its batches."""

    def __init__(self, app: Any, topic: str, max_buffer: int = 20_000) -> None:
        self.app = app
        self.topic = topic
        self.max_buffer = max_buffer
        self._buffer: list[Any] = []
        self._want = 1
        self._ready = asyncio.Event()
        self._enough = asyncio.Event()
        self._paused: set[Any] = set()

    def __len__(self) -> int:
        return len(self._buffer)

    def handler(self, tp: Any) -> Handler:
        """The conductor callback for partition ``tp`` of this topic."""
        app = self.app
        acquire = app.flow_control.acquire
        buffer, ready, enough = self._buffer, self._ready, self._enough

        async def on_message(message: Any) -> None:
            await acquire()
            consumer = app.consumer
            if message.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
                return
            message.incref(1)
            if not message.tracked:
                message.tracked = True
                consumer.track_message(message)
            buffer.append(message)
            ready.set()
            n = len(buffer)
            if n >= self._want:
                enough.set()
            if n >= self.max_buffer and tp not in self._paused:
                self._paused.add(tp)
                consumer.on_buffer_full(tp)

        return on_message

    async def take(self, max_n: int, within_s: float) -> list[Delivered]:
        """Up to ``max_n`` messages: as soon as that many are buffered, else ``within_s`` after the first."""
        while not self._buffer:
            self._ready.clear()
            await self._ready.wait()
        if len(self._buffer) < max_n:
            self._want = max_n
            self._enough.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._enough.wait(), within_s)
        batch = self._buffer[:max_n]
        del self._buffer[:max_n]
        generation = self.app.consumer_generation_id  # fetched before a rebalance: read again after it
        if batch[0].generation_id != generation or batch[-1].generation_id != generation:
            batch = [m for m in batch if m.generation_id == generation]
        if self._paused and len(self._buffer) <= self.max_buffer // 2:
            consumer = self.app.consumer
            for tp in self._paused:
                consumer.on_buffer_drop(tp)
            self._paused.clear()
        return [Delivered(m) for m in batch]

    async def batches(self, stream: Any, max_n: int, within: float) -> AsyncIterator[list[Delivered]]:
        """What ``stream.noack_take(max_n, within)`` would give, from this buffer. Iterating the stream's channel
        once subscribes the topic (what a Faust stream does when it starts); its messages then come here."""
        aiter(stream.channel)
        while True:
            yield await self.take(max_n, within)

    async def ack(self, event: Delivered) -> None:
        """Acknowledge one delivered message (the offset may be committed once everything before it is)."""
        event.message.ack(self.app.consumer)


def install(app: Any, deliveries: Mapping[str, BatchDelivery]) -> None:
    """Route the messages of the topics in ``deliveries`` to them instead of Faust's channel queues."""
    conductor = app.topics
    build = conductor._build_handler

    def build_handler(tp: Any, channels: Any) -> Handler:
        delivery = deliveries.get(tp.topic)
        return build(tp, channels) if delivery is None else delivery.handler(tp)

    conductor._build_handler = build_handler
