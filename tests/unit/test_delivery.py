"""Batch delivery (agents/delivery.py): Faust's consumer messages reach the agent in lists, in order, admitted
like Faust's stream admits them, acknowledged only by the agent, with back-pressure on a full buffer."""

from __future__ import annotations

import asyncio
from typing import Any

from faust.types import TP
from faust.types.tuples import ConsumerMessage
from hypothesis import given
from hypothesis import strategies as st

from agents.delivery import BatchDelivery, Delivered, install

TOPIC = "web"


class FlowControl:
    def __init__(self) -> None:
        self.active = True

    async def acquire(self) -> None:
        return None

    def is_active(self) -> bool:
        return self.active


class Consumer:
    """What the handler and ack call on Faust's consumer, recorded."""

    def __init__(self) -> None:
        self.tracked: list[int] = []
        self.acked: list[int] = []
        self.paused: set[TP] = set()

    def track_message(self, message: ConsumerMessage) -> None:
        self.tracked.append(message.offset)

    def ack(self, message: ConsumerMessage) -> bool:  # as Faust's: the final ack marks the message
        message.acked = True
        self.acked.append(message.offset)
        return True

    def on_buffer_full(self, tp: TP) -> None:
        self.paused.add(tp)

    def on_buffer_drop(self, tp: TP) -> None:
        self.paused.discard(tp)


class App:
    def __init__(self) -> None:
        self.flow_control = FlowControl()
        self.consumer = Consumer()
        self.consumer_generation_id = 1


def message(offset: int, partition: int = 0, generation: int = 1) -> ConsumerMessage:
    return ConsumerMessage(TOPIC, partition, offset, 0.0, 0, None, b"k", b"v", None, generation_id=generation)


async def feed(delivery: BatchDelivery, messages: list[ConsumerMessage]) -> None:
    handlers: dict[TP, Any] = {}
    for m in messages:
        handler = handlers.setdefault(m.tp, delivery.handler(m.tp))
        await handler(m)


@given(st.lists(st.integers(0, 2), max_size=60), st.integers(1, 25))
def test_batches_keep_each_partitions_order_and_lose_nothing(partitions: list[int], max_n: int) -> None:
    async def run() -> list[list[Delivered]]:
        delivery = BatchDelivery(App(), TOPIC)
        await feed(delivery, [message(i, p) for i, p in enumerate(partitions)])
        batches = []
        while len(delivery):
            batches.append(await delivery.take(max_n, 0.001))
        return batches

    batches = asyncio.run(run())
    assert all(0 < len(b) <= max_n for b in batches)
    offsets = [d.message.offset for b in batches for d in b]
    assert offsets == list(range(len(partitions)))


def test_a_batch_waits_at_most_within_for_more_and_returns_at_once_when_full() -> None:
    async def run() -> tuple[int, int]:
        delivery = BatchDelivery(App(), TOPIC)
        await feed(delivery, [message(0)])
        loop = asyncio.get_running_loop()
        asyncio.get_running_loop().call_later(0.01, lambda: asyncio.ensure_future(feed(delivery, [message(1)])))
        started = loop.time()
        first = await delivery.take(5, 0.05)
        await feed(delivery, [message(i) for i in range(2, 7)])
        started_full = loop.time()
        second = await delivery.take(5, 10.0)
        assert loop.time() - started_full < 1.0
        assert loop.time() - started >= 0.04
        return len(first), len(second)

    assert asyncio.run(run()) == (2, 5)


def test_messages_of_an_earlier_generation_or_during_a_rebalance_are_not_delivered_nor_acknowledged() -> None:
    async def run() -> tuple[list[int], App]:
        app = App()
        delivery = BatchDelivery(app, TOPIC)
        await feed(delivery, [message(0, generation=0), message(1)])
        app.flow_control.active = False
        await feed(delivery, [message(2)])
        app.flow_control.active = True
        await feed(delivery, [message(3)])
        app.consumer_generation_id = 2  # a rebalance after they were buffered
        await feed(delivery, [message(4, generation=2)])
        batch = await delivery.take(10, 0.001)
        return [d.message.offset for d in batch], app

    offsets, app = asyncio.run(run())
    assert offsets == [4]
    assert app.consumer.tracked == [1, 3, 4]
    assert app.consumer.acked == []


def test_only_the_agent_acknowledges_and_each_message_once() -> None:
    async def run() -> App:
        app = App()
        delivery = BatchDelivery(app, TOPIC)
        await feed(delivery, [message(i) for i in range(3)])
        batch = await delivery.take(10, 0.001)
        assert app.consumer.acked == []
        for event in batch[:2]:
            await delivery.ack(event)
            await delivery.ack(event)
        return app

    assert asyncio.run(run()).consumer.acked == [0, 1]


def test_a_full_buffer_pauses_its_partitions_until_half_empty() -> None:
    async def run() -> list[set[TP]]:
        app = App()
        delivery = BatchDelivery(app, TOPIC, max_buffer=10)
        seen = []
        await feed(delivery, [message(i, i % 2) for i in range(12)])
        seen.append(set(app.consumer.paused))
        await delivery.take(4, 0.001)  # 8 left: still more than half
        seen.append(set(app.consumer.paused))
        await delivery.take(4, 0.001)  # 4 left
        seen.append(set(app.consumer.paused))
        return seen

    full, still, resumed = asyncio.run(run())
    assert full == {TP(TOPIC, 0), TP(TOPIC, 1)}
    assert still == full
    assert resumed == set()


def test_install_routes_only_the_listed_topics() -> None:
    class Conductor:
        def _build_handler(self, tp: TP, channels: Any) -> str:
            return f"faust:{tp.topic}"

    class WithTopics(App):
        def __init__(self) -> None:
            super().__init__()
            self.topics = Conductor()

    app = WithTopics()
    delivery = BatchDelivery(app, TOPIC)
    install(app, {TOPIC: delivery})
    assert app.topics._build_handler(TP("other", 0), set()) == "faust:other"
    assert callable(app.topics._build_handler(TP(TOPIC, 0), set()))
