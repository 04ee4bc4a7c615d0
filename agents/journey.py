"""Journey agent: resolved-events -> sessions, stages, signals, profiles; one record per customer in a Faust
table, written once per batch, tagged with the batch's end offset (agents/state_table.py).

The table uses Kafka's partitioner on the raw profile id, the same key bytes and partition count as
resolved-events, so a customer's record lives on the partition (and worker) that processes its items. Each
partition's runtime (pending items, watermarks, due times) is rebuilt when the partition's batches stop
following on from the last one this process handled (first batch, reassignment, a seek back after a
rebalance): from its persisted partition state, the due times in the record headers, and a re-read of the
resolved-events messages that still held pending items. A state recovered as of an older offset than the one
consumption resumes at (the group committed past it; the partition state record carries the offset it is at)
first applies the messages in between again, so that nothing committed is skipped.

Order per batch: publish every output and wait for the broker's acks (stages before signals), then the records'
changelog messages, then write the records to the table's store, then acknowledge the inputs (Faust commits
acknowledged offsets later). The state goes last so that it is never ahead of the outputs: whatever a crash
interrupts, the replay finds the state before the batch and emits everything again with the same ids.
The changelog messages are published in one acknowledged batch rather than through Faust's
``table[key] = value``: that queues one message at a time in Faust's producer buffer, whose one-by-one
draining throttled the whole worker (a record per customer per batch). Recovery is Faust's all the same: the
messages go to the table's changelog topic, on the key's partition (the table uses Kafka's partitioner).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agents.batching import PARTITIONER
from agents.cursor import faust_cursor
from agents.publish import RetryPolicy, publish_all
from agents.state_table import catch_up_from, pack, unpack
from pipeline.domain.eventtime import NEVER
from pipeline.metrics import IngestMetrics, JourneyMetrics
from pipeline.metrics_journey import JourneySignalMetrics
from pipeline.steps.bundles import bundle, partition_key
from pipeline.steps.journey import JourneyOutput, JourneyPartition, JourneyStep, Tally
from pipeline.topic_reader import read_range, start_offsets
from schemas.codec import AvroCodec

KeyValue = tuple[bytes | None, bytes]
log = logging.getLogger(__name__)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition for ``key`` (murmur2, as the Java client and aiokafka compute it), cached."""
    return PARTITIONER.partition("", key, partitions)


def state_key(partition: int, partitions: int) -> bytes:
    """The table key of a partition's own state record (it hashes to that partition)."""
    return partition_key(partition, partitions, "journey-state")


def register_journey(
    app: Any, step: JourneyStep, table: Any, source: str, outputs: Mapping[str, Any], codec: AvroCodec,
    partitions: int, bootstrap: str, client_config: Mapping[str, Any], metrics: IngestMetrics,
    journey_metrics: JourneyMetrics, retry: RetryPolicy, batch_size: int, within_s: float,
    signal_metrics: JourneySignalMetrics | None = None,
) -> Any:  # fmt: skip
    """Register the journey agent on ``app``."""
    source_topic = app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw")  # fmt: skip
    timer = metrics.batch_seconds.get("journey")
    expected_next: dict[int, int] = {}

    def load(key: bytes) -> bytes | None:
        return unpack(table.get(key))[2]

    async def restore(partition: int, upto: int) -> list[tuple[int, bytes, bytes]]:
        """Rebuild ``partition``'s runtime for a batch starting at ``upto``; returns the messages before ``upto``
        that the recovered state has not applied yet (to process first)."""
        started = time.perf_counter()
        skey = state_key(partition, partitions)
        tag, _due, raw_state = unpack(table.get(skey))
        loop = asyncio.get_running_loop()
        earliest = 0
        if tag < 0 < upto:  # no state record: behind unless the log starts where consumption resumes
            earliest = (await loop.run_in_executor(None, start_offsets, bootstrap, source, [partition],
                                                   client_config))[partition]  # fmt: skip
        behind: list[tuple[int, bytes, bytes]] = []
        start = catch_up_from(tag, upto, earliest)
        if start is not None:
            # The group committed past the state recovered for this partition: the messages in between are
            # applied again, not skipped. Their outputs were published before that commit and repeat with the
            # same ids.
            found = await loop.run_in_executor(None, read_range, bootstrap, source, partition, start, upto,
                                               client_config)  # fmt: skip
            behind = [(offset, key or b"", value) for offset, key, value in found]
            journey_metrics.catch_up.inc(len(behind))
            log.warning("%s[%d]: state recovered as of offset %d, resuming at %d: %d messages applied again",
                        source, partition, start, upto, len(behind))  # fmt: skip
            upto = start
        due = [(k, unpack(v)[1]) for k, v in list(table.data.items())
               if k != skey and partition_of(k, partitions) == partition]  # fmt: skip
        start = JourneyPartition.min_pending(raw_state)
        pending: list[tuple[int, bytes, bytes]] = []
        if start is not None and start < upto:
            pending = await asyncio.get_running_loop().run_in_executor(
                None, read_range, bootstrap, source, partition, start, upto, client_config
            )
        step.restore(partition, raw_state, due, pending)
        journey_metrics.restore_seconds.observe(time.perf_counter() - started)
        return behind

    cursor = faust_cursor(app, source, bootstrap, app.conf.id, client_config)

    async def journey(stream: Any) -> None:
        async for batch in stream.noack_take(batch_size, within=within_s):
            started = time.perf_counter()
            admitted = await cursor.admit(batch)
            if admitted.reset:
                expected_next.clear()
            events = admitted.events
            if not events:
                continue
            by_partition: dict[int, list[tuple[int, bytes, bytes]]] = {}
            for e in events:
                by_partition.setdefault(e.message.partition, []).append((e.message.offset, e.message.key or b"",
                                                                         e.message.value))  # fmt: skip
            outs: list[JourneyOutput] = []
            changelog: list[KeyValue] = []
            store = table.data
            for partition, messages in sorted(by_partition.items()):
                if expected_next.get(partition) != messages[0][0] or partition not in step.partitions:
                    messages[:0] = await restore(partition, messages[0][0])
                out = step.process(partition, messages, load)
                tag = expected_next[partition] = messages[-1][0] + 1
                written = [(key, pack(tag, due, body)) for key, (body, due) in out.states.items()]
                written.append((state_key(partition, partitions), pack(tag, None, out.partition_state)))
                changelog.extend(written)
                journey_metrics.watermark.get(str(partition)).set(out.watermark / 1000 if out.watermark > NEVER
                                                                  else 0)  # fmt: skip
                outs.append(out)
            await _publish(outs, outputs, codec, partitions, retry, metrics)
            # The state last: a worker that dies before it leaves the state behind every output, and the replay
            # emits them again (same ids); the other way round, a replay would skip what was never published.
            await publish_all([(table.changelog_topic, changelog)], retry, metrics.infra_retries)
            for key, value in changelog:
                store[key] = value
            await cursor.ack(stream, events, admitted.generation)
            owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == source}
            _gauges(step, owned, journey_metrics, signal_metrics)
            timer.observe(time.perf_counter() - started)

    return app.agent(source_topic, name="journey", concurrency=1)(journey)


async def _publish(
    outs: list[JourneyOutput], outputs: Mapping[str, Any], codec: AvroCodec, partitions: int, retry: RetryPolicy,
    metrics: IngestMetrics,
) -> None:  # fmt: skip
    entries = [e for o in outs for e in o.entries]
    by_key: Callable[[bytes], int] = lambda key: partition_of(key, partitions)  # noqa: E731
    resolved = bundle(codec, entries, by_key, partitions) if entries else []

    def gather(pick: Callable[[JourneyOutput], list[KeyValue]]) -> list[KeyValue]:
        return [kv for o in outs for kv in pick(o)]

    # Stages before signals: a consumer sees the stage a signal refers to.
    first: list[tuple[Any, Sequence[KeyValue]]] = [
        (outputs["sessions"], gather(lambda o: o.sessions)),
        (outputs["failed"], gather(lambda o: o.failed)),
        (outputs["journey-stages"], gather(lambda o: o.journey.transitions)),
    ]
    await publish_all(first, retry, metrics.infra_retries)
    then: list[tuple[Any, Sequence[KeyValue]]] = [
        (outputs["signals"], gather(lambda o: o.journey.signals)),
        (outputs["customer-profiles"], gather(lambda o: o.journey.profiles)),
        (outputs["resolved"], resolved),
    ]
    await publish_all(then, retry, metrics.infra_retries)


def _gauges(step: JourneyStep, owned: set[int], jm: JourneyMetrics, sm: JourneySignalMetrics | None) -> None:
    """Gauges over the partitions this worker owns now (a revoked partition's runtime lingers until reused)."""
    parts = [part for p, part in step.partitions.items() if p in owned]
    jm.pending.set(sum(len(items) for part in parts for items in part.pending.values()))
    tally = Tally(*(sum(col) for col in zip(*(part.tally for part in parts), strict=True))) if parts else None
    jm.open_sessions.set(tally.open_sessions if tally else 0)
    if sm is not None:
        sm.churn_risk_customers.set(tally.at_risk if tally else 0)
        sm.state_bytes.set(tally.state_bytes / tally.customers if tally and tally.customers else 0)
