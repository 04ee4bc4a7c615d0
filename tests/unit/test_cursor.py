"""agents/cursor.py: whatever holes, repeats and rebalances the consumer produces, a partition's admitted
messages are its records from the committed offset on, each once, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.cursor import Cursor


@dataclass(frozen=True)
class Msg:
    partition: int
    offset: int


@dataclass(frozen=True)
class Event:
    message: Msg


class Consumer:
    """One partition's log (some offsets hold no record: transaction markers) and a fetch position that the
    script can make jump ahead or back, as Faust's consumer does around rebalances."""

    def __init__(self, records: list[int]) -> None:
        self.records = records
        self.position = 0
        self.committed: int | None = None
        self.seeks: list[int] = []

    def fetch(self, n: int) -> list[Event]:
        out = [Event(Msg(0, o)) for o in self.records if o >= self.position][:n]
        if out:
            self.position = out[-1].message.offset + 1
        return out

    async def committed_offsets(self, partitions: list[int]) -> dict[int, int]:
        return {0: self.committed or 0}  # never committed: the log's start (auto.offset.reset=earliest)

    async def first_record(self, partition: int, start: int, end: int) -> int | None:
        return next((o for o in self.records if start <= o < end), None)

    async def seek(self, partition: int, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset


def new_cursor(consumer: Consumer, clock: list[float]) -> Cursor:
    return Cursor("t", consumer.committed_offsets, consumer.first_record, consumer.seek, reseek_s=1.0,
                  clock=lambda: clock[0])  # fmt: skip


steps = st.lists(
    st.one_of(
        st.tuples(st.just("fetch"), st.integers(1, 6)),
        st.tuples(st.just("jump"), st.integers(1, 15)),
        st.tuples(st.just("back"), st.integers(1, 15)),
        st.tuples(st.just("rebalance"), st.integers(0, 10)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(gaps=st.sets(st.integers(0, 80), max_size=15), script=steps)
def test_admitted_messages_are_the_records_from_the_committed_offset_in_order(
    gaps: set[int], script: list[Any]
) -> None:
    records = [o for o in range(80) if o not in gaps]
    consumer = Consumer(records)
    clock = [0.0]
    cursor = new_cursor(consumer, clock)
    generation: list[int] = []  # offsets admitted since the last rebalance
    start: int | None = None

    async def deliver(events: list[Event]) -> None:
        nonlocal start
        admitted = await cursor.admit(events)
        if admitted.reset:
            generation.clear()
            start = consumer.committed
        generation.extend(e.message.offset for e in admitted.events)

    async def run() -> None:
        for action, n in script:
            clock[0] += 0.4
            if action == "fetch":
                await deliver(consumer.fetch(n))
            elif action == "jump":  # the consumer skips ahead
                consumer.position += n
            elif action == "back":  # it delivers again what it delivered before
                consumer.position = max(0, consumer.position - n)
            else:  # processed messages get committed; the new owner starts at the committed offset
                done = generation[: max(0, len(generation) - n)]
                consumer.committed = done[-1] + 1 if done else consumer.committed
                cursor.rebalanced()
                consumer.position = consumer.committed or 0
            check()
        for _ in range(200):  # the anomalies stop: everything is eventually admitted
            clock[0] += 1.1
            await deliver(consumer.fetch(5))
            if generation and generation[-1] == records[-1]:
                break
        check()
        assert generation and generation[-1] == records[-1]

    def check() -> None:
        if not generation:
            return
        first = start if start is not None else 0
        expected = [o for o in records if o >= first][: len(generation)]
        assert generation == expected

    asyncio.run(run())


def test_a_skip_is_sought_back_once_per_interval_and_a_hole_without_records_is_accepted() -> None:
    consumer = Consumer([0, 1, 2, 5, 6, 7, 8])  # 3 and 4 are transaction markers
    clock = [0.0]
    cursor = new_cursor(consumer, clock)

    async def run() -> None:
        assert [e.message.offset for e in (await cursor.admit(consumer.fetch(2))).events] == [0, 1]
        consumer.position = 6  # skips 2 and 5
        first = await cursor.admit(consumer.fetch(1))
        assert first.events == [] and consumer.seeks == [2]
        consumer.position = 7  # the consumer skips again at once: no second seek within the interval
        assert (await cursor.admit(consumer.fetch(1))).events == [] and consumer.seeks == [2]
        clock[0] += 1.5
        assert (await cursor.admit(consumer.fetch(1))).events == [] and consumer.seeks == [2, 2]
        got = [e.message.offset for e in (await cursor.admit(consumer.fetch(10))).events]
        assert got == [2, 5, 6, 7, 8] and cursor.skips == 1

    asyncio.run(run())


def test_after_a_rebalance_the_partition_resumes_at_the_committed_offset() -> None:
    consumer = Consumer(list(range(20)))
    cursor = new_cursor(consumer, [0.0])

    async def run() -> None:
        await cursor.admit(consumer.fetch(10))
        consumer.committed = 4
        cursor.rebalanced()
        consumer.position = 6  # Faust delivers from further on than the committed offset
        first = await cursor.admit(consumer.fetch(3))
        assert first.reset and first.events == [] and consumer.seeks == [4]
        assert [e.message.offset for e in (await cursor.admit(consumer.fetch(3))).events] == [4, 5, 6]

    asyncio.run(run())
