"""agents/cursor.py: whatever holes, repeats and rebalances the consumer produces, a partition's admitted
messages are its records from the committed offset on, each once, in order."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.cursor import Cursor, Refilled, RefilledMessage


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
        self.reads: list[tuple[int, int]] = []
        self.filled: list[tuple[int, int]] = []

    def fetch(self, n: int) -> list[Event]:
        out = [Event(Msg(0, o)) for o in self.records if o >= self.position][:n]
        if out:
            self.position = out[-1].message.offset + 1
        return out

    async def committed_offsets(self, partitions: list[int]) -> dict[int, int]:
        return {0: self.committed or 0}  # never committed: the log's start (auto.offset.reset=earliest)

    async def read(self, partition: int, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        self.reads.append((start, end))
        return [(o, b"k", b"v%d" % o) for o in self.records if start <= o < end]

    async def fill(self, partition: int, start: int, end: int) -> None:
        self.filled.append((start, end))


def new_cursor(consumer: Consumer) -> Cursor:
    return Cursor("t", consumer.committed_offsets, consumer.read, consumer.fill)


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
    cursor = new_cursor(consumer)
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
            if action == "fetch":
                await deliver(consumer.fetch(n))
            elif action == "jump":  # the consumer skips ahead
                consumer.position = min(consumer.position + n, 80)  # never past the log end
            elif action == "back":  # it delivers again what it delivered before
                consumer.position = max(0, consumer.position - n)
            else:  # processed messages get committed; the new owner starts at the committed offset
                done = generation[: max(0, len(generation) - n)]
                consumer.committed = done[-1] + 1 if done else consumer.committed
                cursor.rebalanced()
                consumer.position = consumer.committed or 0
            check()
        # The anomalies stop and new traffic arrives: a hole at the end is revealed by the next record.
        records.append(80)
        while not generation or generation[-1] != records[-1]:
            await deliver(consumer.fetch(5))
            check()
        assert generation and generation[-1] == records[-1]

    def check() -> None:
        if not generation:
            return
        first = start if start is not None else 0
        expected = [o for o in records if o >= first][: len(generation)]
        assert generation == expected

    asyncio.run(run())


def test_a_skip_is_read_from_the_broker_and_counted_as_processed_with_the_message_after_it() -> None:
    consumer = Consumer([0, 1, 2, 5, 6, 7, 8])  # 3 and 4 are transaction markers
    cursor = new_cursor(consumer)

    async def run() -> None:
        assert [e.message.offset for e in (await cursor.admit(consumer.fetch(2))).events] == [0, 1]
        consumer.position = 6  # skips 2 and 5
        first = await cursor.admit(consumer.fetch(1))
        assert [(type(e).__name__, e.message.offset) for e in first.events] == [
            ("Refilled", 2),
            ("Refilled", 5),
            ("Event", 6),
        ]
        assert first.events[0].message.value == b"v2"
        assert consumer.reads == [(2, 6)] and consumer.filled == [(2, 6)] and cursor.refilled == 2
        consumer.position = 2  # Faust delivers the skipped records after all: already admitted
        again = await cursor.admit(consumer.fetch(10))
        assert [e.message.offset for e in again.events] == [7, 8] and again.dropped == 3

    asyncio.run(run())


def test_only_faust_events_of_the_current_assignment_are_acknowledged() -> None:
    acked: list[int] = []

    class Stream:
        async def ack(self, event: Event) -> None:
            acked.append(event.message.offset)

    consumer = Consumer(list(range(10)))
    cursor = new_cursor(consumer)

    async def run() -> None:
        first = await cursor.admit(consumer.fetch(2))
        refilled = Refilled(RefilledMessage(0, 3, b"", b""))
        await cursor.ack(Stream(), [*first.events, refilled], first.generation)
        assert acked == [0, 1]
        second = await cursor.admit(consumer.fetch(2))
        cursor.rebalanced()  # revoked while the batch was being processed
        await cursor.ack(Stream(), second.events, second.generation)
        assert acked == [0, 1]

    asyncio.run(run())


def test_after_a_rebalance_the_partition_resumes_at_the_committed_offset() -> None:
    consumer = Consumer(list(range(20)))
    cursor = new_cursor(consumer)

    async def run() -> None:
        await cursor.admit(consumer.fetch(10))
        consumer.committed = 4
        cursor.rebalanced()
        consumer.position = 6  # Faust delivers from further on than the committed offset
        first = await cursor.admit(consumer.fetch(3))
        assert first.reset and [e.message.offset for e in first.events] == [4, 5, 6, 7, 8]
        assert [e.message.offset for e in (await cursor.admit(consumer.fetch(3))).events] == [9, 10, 11]

    asyncio.run(run())


def test_install_stops_faust_counting_undelivered_offsets_as_acknowledged() -> None:
    from faust.transport.consumer import Consumer as FaustConsumer
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from agents.cursor import _FAUST_ADD_GAP, install

    assert _FAUST_ADD_GAP.__qualname__ == "Consumer._add_gap"  # the method Faust's drain loop calls on a jump
    install()

    class Probe:
        def __init__(self) -> None:
            self._committed_offset: dict[Any, int] = {}
            self._gap: dict[Any, Any] = {}

    probe = Probe()
    asyncio.run(faust_aiokafka.Consumer._add_gap(probe, "tp", 3, 9))  # type: ignore[arg-type]
    assert probe._gap == {} and FaustConsumer._add_gap is faust_aiokafka.Consumer._add_gap


def test_a_partition_silent_since_a_rebalance_while_fetched_past_its_due_offset_is_sought_back() -> None:
    consumer = Consumer(list(range(20)))
    clock = [0.0]
    cursor = Cursor("t", consumer.committed_offsets, consumer.read, consumer.fill, stall_s=3.0,
                    clock=lambda: clock[0])  # fmt: skip

    async def run() -> None:
        consumer.committed = 7
        cursor.rebalanced()  # the consumer kept fetch position 12 across it and delivers nothing
        assert await cursor.stalled(0, 7) is None  # fetched up to the due offset: nothing undelivered
        assert await cursor.stalled(0, 12) is None  # give the consumer time to deliver
        clock[0] = 2.9
        assert await cursor.stalled(0, 12) is None
        clock[0] = 3.1
        assert await cursor.stalled(0, 12) == 7  # nothing admitted for 3 s while fetched to 12
        clock[0] = 4.0
        assert await cursor.stalled(0, 12) is None  # not again within the interval
        clock[0] = 6.2
        assert await cursor.stalled(0, 12) == 7  # still nothing: again

    asyncio.run(run())


def test_a_partition_that_admitted_since_the_rebalance_is_never_sought_back() -> None:
    consumer = Consumer(list(range(20)))
    clock = [0.0]
    cursor = Cursor("t", consumer.committed_offsets, consumer.read, consumer.fill, stall_s=3.0,
                    clock=lambda: clock[0])  # fmt: skip

    async def run() -> None:
        cursor.rebalanced()
        await cursor.admit(consumer.fetch(5))
        for t in (1.0, 5.0, 60.0):  # fetched to 12, delivered to 5: in flight (a busy agent, a paused partition)
            clock[0] = t
            assert await cursor.stalled(0, 12) is None
        cursor.rebalanced()
        consumer.committed = 3
        assert await cursor.due(0) == 3  # a rebalance is pending: the committed offset is due
        clock[0] = 61.0
        assert await cursor.stalled(0, 12) is None
        clock[0] = 64.5
        assert await cursor.stalled(0, 12) == 3  # a new assignment: silent again, so sought back

    asyncio.run(run())


def test_events_of_partitions_assigned_elsewhere_are_dropped() -> None:
    consumer = Consumer(list(range(10)))
    owned: set[int] = {0}
    cursor = Cursor("t", consumer.committed_offsets, consumer.read, consumer.fill, owned=lambda: owned)

    async def run() -> None:
        events = consumer.fetch(3)
        owned.clear()  # revoked while the batch sat in the stream's buffer
        cursor.rebalanced()
        late = await cursor.admit(events)
        assert late.events == [] and late.dropped == 3 and consumer.reads == []

    asyncio.run(run())
