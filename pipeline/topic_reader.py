"""Read a whole topic from the beginning to its current end (demo summaries, evaluation, tests).

Uses manual partition assignment and no consumer group, so it never disturbs the pipeline's committed offsets.
Reads what was in the topic when the call started; messages produced meanwhile may or may not be included.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

from kafka import KafkaConsumer, TopicPartition


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """One message as stored in Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def iter_topic(
    bootstrap: str, topic: str, timeout_s: float = 30.0, client_config: Mapping[str, Any] | None = None
) -> Iterator[TopicMessage]:
    """Yield every message of ``topic`` from the earliest offset up to the end offsets seen at the start.

    Raises ``TimeoutError`` if the end is not reached within ``timeout_s`` (broker gone, topic truncated).
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=int(timeout_s * 1000),
        max_partition_fetch_bytes=4 * 1024 * 1024,
        **(client_config or {}),
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"topic {topic!r} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = {tp: off for tp, off in consumer.end_offsets(tps).items() if off > 0}
        remaining = {tp for tp, off in end.items() if consumer.position(tp) < off}
        while remaining:
            batch = consumer.poll(timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"reading {topic}: no data for {timeout_s}s, {len(remaining)} partitions left")
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset < end.get(tp, 0):
                        yield TopicMessage(topic, rec.partition, rec.offset, rec.key, rec.value,
                                           tuple(rec.headers or ()))  # fmt: skip
                if tp in remaining and consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
    finally:
        consumer.close()


def topic_end_total(bootstrap: str, topic: str, client_config: Mapping[str, Any] | None = None) -> int:
    """Sum of the end offsets of every partition of ``topic`` (its message count when never truncated)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False, **(client_config or {})
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        return int(sum(consumer.end_offsets(tps).values())) if tps else 0
    finally:
        consumer.close()


def scan_partition(
    bootstrap: str, topic: str, partition: int, client_config: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> Iterator[tuple[int, bytes | None, bytes | None]]:  # fmt: skip
    """(offset, key, value) of every message of one partition, from its first offset to the end offset seen at
    the start (a worker taking over the partition of a state topic). Raises ``TimeoutError`` when the end is not
    reached within ``timeout_s`` of silence."""
    return _partition_records(bootstrap, topic, partition, None, None, client_config, timeout_s)


def read_range(
    bootstrap: str, topic: str, partition: int, start: int, end: int,
    client_config: Mapping[str, Any] | None = None, timeout_s: float = 30.0,
) -> list[tuple[int, bytes, bytes]]:  # fmt: skip
    """(offset, key, value) of the messages of one partition in ``[start, end)`` (a worker re-reading what its
    state says is still pending). Raises ``TimeoutError`` when the range cannot be read within ``timeout_s``."""
    if start >= end:
        return []
    records = _partition_records(bootstrap, topic, partition, start, end, client_config, timeout_s)
    # A null value stays None (an input's poison pill that ingest reports as such), as it was read.
    return [(offset, key or b"", cast(bytes, value)) for offset, key, value in records]


def _partition_records(
    bootstrap: str, topic: str, partition: int, start: int | None, end: int | None,
    client_config: Mapping[str, Any] | None, timeout_s: float,
) -> Iterator[tuple[int, bytes | None, bytes | None]]:  # fmt: skip
    """The records of one partition in ``[start, end)``; None: the log's first offset / its end offset now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, group_id=None,
                             max_partition_fetch_bytes=4 * 1024 * 1024, **(client_config or {}))  # fmt: skip
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        if start is None:
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        stop = consumer.end_offsets([tp])[tp] if end is None else end
        while consumer.position(tp) < stop:
            batch = consumer.poll(timeout_ms=int(timeout_s * 1000))
            if not batch:
                raise TimeoutError(f"reading {topic}[{partition}] to {stop}: no data for {timeout_s}s")
            for rec in batch.get(tp, []):
                if rec.offset < stop and (start is None or rec.offset >= start):
                    yield rec.offset, rec.key, rec.value
    finally:
        consumer.close()


def first_offset(
    bootstrap: str, topic: str, partition: int, start: int, end: int,
    client_config: Mapping[str, Any] | None = None, timeout_s: float = 30.0,
) -> int | None:  # fmt: skip
    """The offset of the first record of one partition in ``[start, end)``, or None when the range holds none
    (offsets taken by transaction markers). Raises ``TimeoutError`` when it cannot be read within ``timeout_s``."""
    if start >= end:
        return None
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, group_id=None,
                             max_partition_fetch_bytes=1024 * 1024, **(client_config or {}))  # fmt: skip
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < end:  # markers move the position without yielding records
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}[{partition}] from {start}: no data for {timeout_s}s")
            for rec in consumer.poll(timeout_ms=500, max_records=1).get(tp, []):
                return rec.offset if rec.offset < end else None
        return None
    finally:
        consumer.close()


def start_offsets(
    bootstrap: str, topic: str, partitions: list[int], client_config: Mapping[str, Any] | None = None
) -> dict[int, int]:
    """The first offset still in the log of each partition (after retention)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, group_id=None,
                             **(client_config or {}))  # fmt: skip
    try:
        found = consumer.beginning_offsets([TopicPartition(topic, p) for p in partitions])
        return {tp.partition: int(offset) for tp, offset in found.items()}
    finally:
        consumer.close()
