"""Bytes of journey state per active customer, read from the journey table's changelog after a run.

The journey table holds ONE record per resolved customer (sessions, stage, trigger timers, statistics) as
encoded bytes; its changelog topic (``<app_id>-journey-changelog``) receives every version. The latest
version per key is what a worker keeps in memory and what recovery replays, so its size (key + value) is the
state cost per customer. Measures encoded bytes only: the Python objects holding them in the memory store add
a fixed overhead per entry (bytes object + dict slot, about 100 bytes), and the worker's RSS covers the rest.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition


@dataclass(frozen=True)
class StateSize:
    """Latest-version sizes over the customers that have state."""

    customers: int
    mean_bytes: float
    p50_bytes: float
    p99_bytes: float
    max_bytes: int
    changelog_messages: int
    total_bytes: int


def changelog_topic(app_id: str, table: str = "journey") -> str:
    return f"{app_id}-{table}-changelog"


def state_sizes(bootstrap: str, topic: str, timeout_s: float = 120.0) -> StateSize | None:
    """Read ``topic`` to its end offsets; None when the topic has no messages."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        enable_auto_commit=False,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        ends = {tp: off for tp, off in consumer.end_offsets(tps).items() if off > 0} if tps else {}
        if not ends:
            return None
        consumer.assign(list(ends))
        consumer.seek_to_beginning(*ends)
        latest: dict[bytes, int] = {}
        seen = 0
        remaining = set(ends)
        while remaining:
            batch = consumer.poll(timeout_ms=2000, max_records=50_000)
            if not batch:
                break
            for tp, records in batch.items():
                for rec in records:
                    seen += 1
                    key = rec.key or b""
                    # A tombstone (None) removes the customer's state; an empty value is "no state" as well.
                    if rec.value:
                        latest[key] = len(key) + len(rec.value)
                    else:
                        latest.pop(key, None)
                if records and records[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
    sizes = sorted(latest.values())
    if not sizes:
        return None
    return StateSize(
        customers=len(sizes),
        mean_bytes=statistics.fmean(sizes),
        p50_bytes=float(sizes[len(sizes) // 2]),
        p99_bytes=float(sizes[min(len(sizes) - 1, int(len(sizes) * 0.99))]),
        max_bytes=sizes[-1],
        changelog_messages=seen,
        total_bytes=sum(sizes),
    )
