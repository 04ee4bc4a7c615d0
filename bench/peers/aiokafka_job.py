"""The peer job written by hand: aiokafka consumer and producer around a Python dict, no framework.

One ``AIOKafkaConsumer`` assigned every partition of the four channel topics (no consumer group, like the
floor), reading from the beginning with ``getmany`` batches until the end offsets taken at start are reached.
Per batch and partition the updates (``core.encode``: JSON via the standard library) are appended to a
``BatchBuilder`` and handed over with ``send_batch`` to the same partition number of the output topic: the
inputs are partitioned by the customer key already, so a customer's updates stay together and in order without
hashing the key again. State is a dict ``customer key -> session`` and is lost at exit, like a job without
checkpoints; no offsets are committed. The producer uses ``acks=all`` and ``linger_ms=5`` (librdkafka's
defaults, which the other two peers run with). The clock stops after ``flush()`` and every batch's delivery.

``python -m bench.peers.aiokafka_job SPEC.json RESULT.json`` (in the peers' virtualenv).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bench.peers.core import CoreJob, Ends, Session, encode, read_spec, update, versions, write_result

BATCH_BYTES = 512 * 1024  # below the producer's 1 MB max request size


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    job, ends = CoreJob(spec), Ends(spec["ends"])
    output = spec["output"]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=spec["bootstrap"],
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=spec["bootstrap"], acks="all", linger_ms=5, max_batch_size=BATCH_BYTES
    )
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(topic, partition) for topic, partition in ends.ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        state: dict[str, Session] = {}
        deliveries: list[asyncio.Future[Any]] = []
        done = not ends.remaining
        while not done:
            batch = await consumer.getmany(timeout_ms=5000, max_records=10_000)
            if not batch:
                raise TimeoutError(f"no data for 5 s with {len(ends.remaining)} partitions unfinished")
            for tp, records in batch.items():
                builder = producer.create_batch()
                for record in records:
                    parsed = job.event(record.key, record.value)
                    if parsed is None:
                        continue
                    customer, event_ms = parsed
                    current, late = job.step(state.get(customer), event_ms)
                    if not late:
                        state[customer] = current
                    key, value = customer.encode(), encode(update(customer, current, late))
                    if builder.append(key=key, value=value, timestamp=None) is None:
                        deliveries.append(await producer.send_batch(builder, output, partition=tp.partition))
                        builder = producer.create_batch()
                        builder.append(key=key, value=value, timestamp=None)
                if builder.record_count():
                    deliveries.append(await producer.send_batch(builder, output, partition=tp.partition))
                if records:
                    done = ends.processed(tp.topic, tp.partition, records[-1].offset)
        await producer.flush()
        await asyncio.gather(*deliveries)  # raises if a batch was not delivered
        return job.result(ends.expected, packages=versions("aiokafka"), keys=len(state))
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: list[str]) -> None:
    write_result(argv[2], asyncio.run(run(read_spec(argv[1]))))


if __name__ == "__main__":
    main(sys.argv)
