"""publish / publish_all / send_chunks: every item acknowledged before returning, failures resent, topics
overlapped, record batches cut by partition (Kafka's murmur2) and by size, key order kept."""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry, Counter

from agents.batching import PARTITION_SLICE, Partitioner, send_chunks
from agents.publish import EXIT_INFRA, RetryClock, RetryPolicy, publish, publish_all
from pipeline.metrics import ChildCache


class Producer:
    """aiokafka's batch API over real ``BatchBuilder``s; the test releases acks; the first ``fail`` batches fail."""

    def __init__(self, log: list[str], partitions: int = 4, batch_bytes: int = 16384, fail: int = 0) -> None:
        self.log, self.partitions, self.batch_bytes, self.fail = log, partitions, batch_bytes, fail
        self.acked: list[tuple[str, int, bytes | None, bytes]] = []
        self.release = asyncio.Event()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(self.batch_bytes, 0, is_transactional=False)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.log.append(f"send {topic}")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        failing = self.fail > 0
        self.fail -= int(failing)
        records = _records(batch)

        async def settle() -> None:
            await self.release.wait()
            if failing:
                future.set_exception(ConnectionError("broker gone"))
            else:
                self.acked.extend((topic, partition, k, v) for k, v in records)
                future.set_result(None)

        asyncio.get_running_loop().create_task(settle())
        return future


def _records(batch: BatchBuilder) -> list[tuple[bytes | None, bytes]]:
    from aiokafka.record.default_records import DefaultRecordBatch

    buffer = batch._build()
    return [(r.key, r.value) for r in DefaultRecordBatch(bytes(buffer))]


class Topic:
    """What ``publish`` needs of a Faust topic: its name and its app's aiokafka producer."""

    def __init__(self, name: str, producer: Producer) -> None:
        self.name = name
        self.app = type("App", (), {"producer": type("P", (), {"_ensure_producer": lambda _s: producer})()})()

    def get_topic_name(self) -> str:
        return self.name


def _retries() -> ChildCache[Counter]:
    return ChildCache(Counter("retries", "r", ["what"], registry=CollectorRegistry()))


def test_publish_all_sends_to_every_topic_before_waiting_for_acks() -> None:
    async def run() -> list[str]:
        log: list[str] = []
        producer = Producer(log, partitions=1)
        a, b = Topic("a", producer), Topic("b", producer)
        task = asyncio.create_task(
            publish_all([(a, [(None, b"1")]), (b, [(None, b"2")]), (a, [])], RetryPolicy(), _retries())
        )
        await asyncio.sleep(0.01)
        assert log == ["send a", "send b"] and not task.done()  # both in flight, nothing acked yet
        producer.release.set()
        await task
        assert sorted(v for *_, v in producer.acked) == [b"1", b"2"]
        return log

    assert asyncio.run(run()) == ["send a", "send b"]


def test_publish_resends_only_the_batch_that_failed() -> None:
    async def run() -> Producer:
        producer = Producer([], partitions=2, fail=1)
        producer.release.set()
        items = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
        await publish(Topic("t", producer), items, RetryPolicy(first_delay_s=0.01), _retries())
        return producer

    producer = asyncio.run(run())
    values = [v for *_, v in producer.acked]
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(20))  # each exactly once
    assert len(producer.log) == 3  # two partitions, then the failed one again


def test_chunks_follow_kafkas_partitioner_keep_key_order_and_split_when_full() -> None:
    async def run() -> tuple[Producer, int]:
        producer = Producer([], partitions=3, batch_bytes=300)
        producer.release.set()
        items = [(f"customer-{i % 7}".encode(), f"event-{i:03d}".encode() * 3) for i in range(60)]
        chunks = await send_chunks(producer, "t", items, Partitioner())
        await asyncio.gather(*(c.future for c in chunks))
        assert sorted(i for c in chunks for i in c.items) == sorted(items)
        return producer, len(chunks)

    producer, chunks = asyncio.run(run())
    assert chunks > 3  # 300-byte batches: partitions were cut into several record batches
    for _topic, partition, key, _value in producer.acked:
        assert key is not None and partition == (murmur2(key) & 0x7FFFFFFF) % 3
    for k in range(7):
        key = f"customer-{k}".encode()
        sent = [v for _t, _p, kk, v in producer.acked if kk == key]
        assert sent == [f"event-{i:03d}".encode() * 3 for i in range(60) if i % 7 == k]


def test_partitioning_many_messages_gives_the_loop_turns_and_keeps_key_order() -> None:
    """A midnight publishes a record per customer: the partitioning pass yields every PARTITION_SLICE messages."""

    async def run() -> tuple[Producer, int]:
        producer = Producer([], partitions=3, batch_bytes=1 << 20)
        producer.release.set()
        turns = 0
        done = False

        async def other_task() -> None:
            nonlocal turns
            while not done:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other_task())
        await asyncio.sleep(0)
        before = turns
        items = [(f"c{i % 1000}".encode(), f"v{i}".encode()) for i in range(3 * PARTITION_SLICE)]
        chunks = await send_chunks(producer, "t", items, Partitioner())
        ran = turns - before
        await asyncio.gather(*(c.future for c in chunks))
        done = True
        await task
        assert sorted(i for c in chunks for i in c.items) == sorted(items)
        return producer, ran

    producer, ran = asyncio.run(run())
    assert ran >= 3  # one turn per slice at least (3 one-megabyte batches would not give it any)
    for k in (0, 1, 999):
        key = f"c{k}".encode()
        assert [v for _t, _p, kk, v in producer.acked if kk == key] == [
            f"v{i}".encode() for i in range(3 * PARTITION_SLICE) if i % 1000 == k]  # fmt: skip


def test_partitioner_spreads_keyless_messages_and_caches_keys() -> None:
    partitioner = Partitioner()
    assert [partitioner.partition("t", None, 3) for _ in range(6)] == [0, 1, 2, 0, 1, 2]
    key = b"customer-42"
    expected = (murmur2(key) & 0x7FFFFFFF) % 12
    assert partitioner.partition("t", key, 12) == partitioner.partition("u", key, 12) == expected


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class GaveUp(Exception):
    pass


def _give_up(message: str, code: int) -> NoReturn:
    raise GaveUp(message, code)


def test_an_outage_longer_than_the_budget_exits_75_after_the_budget_and_not_before() -> None:
    clock = FakeClock()
    policy = RetryPolicy(budget_s=300.0, clock=RetryClock(clock.now, clock.sleep), give_up=_give_up)

    async def run() -> None:
        producer = Producer([], partitions=1, fail=10**6)  # the broker never comes back
        producer.release.set()
        await publish(Topic("t", producer), [(b"k", b"v")], policy, _retries())

    with pytest.raises(GaveUp) as stopped:
        asyncio.run(run())
    message, code = stopped.value.args
    assert code == EXIT_INFRA and "for 300s" in message
    waited = sum(clock.sleeps)
    assert 300.0 - policy.max_delay_s < waited <= 300.0  # it used the whole budget, and no more
    assert clock.sleeps[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0] and max(clock.sleeps) == policy.max_delay_s


def test_an_outage_shorter_than_the_budget_is_waited_out_and_every_item_is_sent_once() -> None:
    clock = FakeClock()
    policy = RetryPolicy(budget_s=300.0, clock=RetryClock(clock.now, clock.sleep), give_up=_give_up)

    async def run() -> Producer:
        producer = Producer([], partitions=1, fail=25)  # 25 failed attempts: about 3.5 minutes of outage
        producer.release.set()
        await publish(Topic("t", producer), [(b"k", b"v1"), (b"k", b"v2")], policy, _retries())
        return producer

    producer = asyncio.run(run())
    assert [v for *_, v in producer.acked] == [b"v1", b"v2"]
    assert 100.0 < sum(clock.sleeps) < 300.0
