"""Sending a batch's outputs as Kafka record batches, one per partition, instead of one ``send`` per message.

Why: a Faust ``Topic.send`` per message walks Faust's channel, the producer buffer and aiokafka's ``send``
(each with a future and debug logging) and leaves aiokafka to cut many small record batches; measured on the
pipeline, that per-message path cost more than the processing itself. Here the agent partitions the messages
itself (Kafka's default partitioner: murmur2 of the key, so a key lands where any Kafka client would put it,
and where the journey table's changelog expects it), fills one ``BatchBuilder`` per partition and hands each
to aiokafka's ``send_batch``: one future per record batch.

Guarantees: messages of one key keep their order (same partition, appended in order, batches queued in order);
every message is in exactly one returned chunk, whose future resolves when the broker acknowledged the chunk
or fails with the error of the whole chunk (the caller resends exactly that chunk). Not guaranteed: which
partition a message without a key goes to (round-robin per topic).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kafka.partitioner.default import murmur2

KeyValue = tuple[bytes | None, bytes | None]  # a None value is a tombstone
_CACHE_LIMIT = 200_000  # keys per partition count; cleared when full (a cache, not state)
PARTITION_SLICE = 5_000  # messages partitioned between two turns of the event loop (up to ~6 us each uncached)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Messages sent as one record batch, and the future of the broker's acknowledgement."""

    items: Sequence[KeyValue]
    future: asyncio.Future[Any]


class Partitioner:
    """Kafka's default partitioner with a cache: keys repeat (one per customer), murmur2 in Python does not."""

    def __init__(self) -> None:
        self._cache: dict[int, dict[bytes, int]] = {}
        self._round_robin: dict[str, Iterator[int]] = {}

    def partition(self, topic: str, key: bytes | None, partitions: int) -> int:
        if key is None:
            counter = self._round_robin.setdefault(topic, itertools.count())
            return next(counter) % partitions
        cache = self._cache.setdefault(partitions, {})
        found = cache.get(key)
        if found is None:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            found = cache[key] = (murmur2(key) & 0x7FFFFFFF) % partitions
        return found


#: One cache of key -> partition for every agent of the process.
PARTITIONER = Partitioner()


async def partition_count(topic: Any) -> int:
    """Partitions of a Faust topic as the producer sees them (the count ``send_chunks`` partitions by)."""
    return len(await aiokafka_producer(topic).partitions_for(topic.get_topic_name()))


def aiokafka_producer(topic: Any) -> Any:
    """The running aiokafka producer behind a Faust topic's app (Faust's aiokafka driver keeps it there)."""
    return topic.app.producer._ensure_producer()


async def send_chunks(producer: Any, topic: str, items: Sequence[KeyValue], partitioner: Partitioner) -> list[Chunk]:
    """Queue ``items`` on ``topic`` as record batches (see the module docstring). Raises only when the topic's
    metadata cannot be had (nothing queued then); a chunk the producer refuses gets a failed future."""
    partitions = len(await producer.partitions_for(topic))
    by_partition: dict[int, list[KeyValue]] = {}
    for n, item in enumerate(items, 1):
        by_partition.setdefault(partitioner.partition(topic, item[0], partitions), []).append(item)
        if n % PARTITION_SLICE == 0:  # a midnight publishes a record per customer: the loop gets turns meanwhile
            await asyncio.sleep(0)
    chunks: list[Chunk] = []
    for partition, part in by_partition.items():
        start = 0
        batch = producer.create_batch()
        for i, (key, value) in enumerate(part):
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send, start the next one
                chunks.append(Chunk(part[start:i], await _submit(producer, batch, topic, partition)))
                start, batch = i, producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # the first record of a batch always fits
        chunks.append(Chunk(part[start:], await _submit(producer, batch, topic, partition)))
    return chunks


async def _submit(producer: Any, batch: Any, topic: str, partition: int) -> asyncio.Future[Any]:
    batch.close()  # nothing else may join it: the chunk's future must cover exactly these items
    try:
        future: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
    except Exception as exc:  # e.g. the accumulator timed out waiting for room: resend this chunk later
        future = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
    return future
