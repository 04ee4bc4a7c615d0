"""Journey agent: resolved-events -> sessions, stages, signals, profiles; one record per customer in the
journey's state topic (compacted, ``<app id>-journey-changelog``), written once per batch and tagged with the
batch's end offset (agents/state_table.py).

Records are keyed by the raw profile id and published with Kafka's partitioner over as many partitions as
resolved-events, so a customer's record lives on the partition (and worker) that processes its items. The
records of the partitions this worker owns are held in memory. Each partition's runtime (records, pending
items, watermarks, due times) is rebuilt when the partition's batches stop following on from the last one this
process handled (first batch, reassignment, a seek back after a rebalance): the records are read from the state
topic with a plain consumer as of the offset consumption resumes at (unless still held here), then the due
times come from the record headers and the pending items from a re-read of the resolved-events messages that
held them. A state older than the offset consumption resumes at (kept here while another worker went on with
the partition) first applies the messages in between again, so that nothing committed is skipped.

Order per batch: publish every output and wait for the broker's acks (stages before signals), then the records
(one acknowledged batch), then update the records in memory, then acknowledge the inputs (Faust commits
acknowledged offsets later). A pass runs at most ``due_per_pass`` customers for their timers alone; customers
left due (a midnight re-scores every scored customer) run in further passes without messages, in the same order
each, before the next batch is taken; their records carry the batch's tag, since they are a function of the same
inputs. The state goes last so that it is never ahead of the outputs: whatever a crash
interrupts, the replay finds the state before the batch and emits everything again with the same ids.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import islice
from typing import Any

from agents.batching import PARTITIONER
from agents.cursor import faust_cursor
from agents.publish import RetryPolicy, publish_all
from agents.state_table import catch_up_from, pack, recover, unpack
from pipeline.domain.eventtime import NEVER
from pipeline.metrics import IngestMetrics, JourneyMetrics
from pipeline.metrics_journey import JourneySignalMetrics
from pipeline.steps.bundles import bundle, partition_key
from pipeline.steps.journey import JourneyOutput, JourneyPartition, JourneyStep, Tally
from pipeline.topic_reader import read_range, scan_partition, start_offsets
from schemas.codec import AvroCodec

KeyValue = tuple[bytes | None, bytes]
Message = tuple[int, bytes, bytes]  # offset, key, value
log = logging.getLogger(__name__)
RECORD_SLICE = 10_000  # records packed or stored between two turns of the loop (about 1 us each)


def _body(store: Mapping[bytes, bytes], key: bytes) -> bytes | None:
    """A customer's record body in ``store`` (None: no record yet)."""
    return unpack(store.get(key))[2]


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition for ``key`` (murmur2, as the Java client and aiokafka compute it), cached."""
    return PARTITIONER.partition("", key, partitions)


def state_key(partition: int, partitions: int) -> bytes:
    """The table key of a partition's own state record (it hashes to that partition)."""
    return partition_key(partition, partitions, "journey-state")


def register_journey(
    app: Any, step: JourneyStep, state_topic: Any, source: str, outputs: Mapping[str, Any], codec: AvroCodec,
    partitions: int, bootstrap: str, client_config: Mapping[str, Any], metrics: IngestMetrics,
    journey_metrics: JourneyMetrics, retry: RetryPolicy, batch_size: int, within_s: float,
    signal_metrics: JourneySignalMetrics | None = None, due_per_pass: int = 10_000,
) -> Any:  # fmt: skip
    """Register the journey agent on ``app``; ``state_topic`` is the (Faust) topic its records go to.
    ``due_per_pass``: customers a pass runs for their timers alone (about 0.1 ms each); what a pass holds until
    it is published stays that small, so neither freeing it nor the garbage collector walking it holds the loop
    for long."""
    source_topic = app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw")  # fmt: skip
    state_name = state_topic.get_topic_name()
    timer = metrics.batch_seconds.get("journey")
    expected_next: dict[int, int] = {}
    records: dict[int, dict[bytes, bytes]] = {}  # partition -> its records as written (state topic + this process)

    async def restore(partition: int, upto: int) -> list[tuple[int, bytes, bytes]]:
        """Rebuild ``partition``'s records and runtime for a batch starting at ``upto``; returns the messages
        before ``upto`` that the recovered state has not applied yet (to process first)."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        store = records.get(partition)
        if store is None:  # not held here: read from the state topic, as of the offset consumption resumes at
            store = records[partition] = await loop.run_in_executor(
                None, lambda: recover(scan_partition(bootstrap, state_name, partition, client_config), upto)
            )
        skey = state_key(partition, partitions)
        tag, _due, raw_state = unpack(store.get(skey))
        earliest = 0
        if tag < 0 < upto:  # no state record: behind unless the log starts where consumption resumes
            earliest = (await loop.run_in_executor(None, start_offsets, bootstrap, source, [partition],
                                                   client_config))[partition]  # fmt: skip
        behind: list[tuple[int, bytes, bytes]] = []
        again_from = catch_up_from(tag, upto, earliest)
        if again_from is not None:
            # The state is behind the offset consumption resumes at (kept here while another worker went on with
            # the partition, or written before the last commit): the messages in between are applied again, not
            # skipped. Their outputs were published before that commit and repeat with the same ids.
            behind = await loop.run_in_executor(None, read_range, bootstrap, source, partition, again_from, upto,
                                                client_config)  # fmt: skip
            journey_metrics.catch_up.inc(len(behind))
            log.warning("%s[%d]: state as of offset %d, resuming at %d: %d messages applied again",
                        source, partition, again_from, upto, len(behind))  # fmt: skip
            upto = again_from
        due = [(k, unpack(v)[1]) for k, v in store.items() if k != skey]
        start = JourneyPartition.min_pending(raw_state)
        pending: list[tuple[int, bytes, bytes]] = []
        if start is not None and start < upto:
            pending = await loop.run_in_executor(None, read_range, bootstrap, source, partition, start, upto,
                                                 client_config)  # fmt: skip
        step.restore(partition, raw_state, due, pending)
        freeze_heap_once()
        journey_metrics.restore_seconds.observe(time.perf_counter() - started)
        return behind

    cursor = faust_cursor(app, source, bootstrap, app.conf.id, client_config)

    def owned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == source}

    async def journey(stream: Any) -> None:
        async for batch in stream.noack_take(batch_size, within=within_s):
            started = time.perf_counter()
            admitted = await cursor.admit(batch)
            if admitted.reset:
                expected_next.clear()
                mine = owned()
                for gone in [p for p in records if p not in mine]:  # another worker writes them now
                    del records[gone]
            events = admitted.events
            if not events:
                continue
            by_partition: dict[int, list[tuple[int, bytes, bytes]]] = {}
            for e in events:
                by_partition.setdefault(e.message.partition, []).append((e.message.offset, e.message.key or b"",
                                                                         e.message.value))  # fmt: skip
            await run(by_partition)
            await cursor.ack(stream, events, admitted.generation)
            # Customers left due by the bound on a pass (a midnight re-scores every customer) run now, in passes
            # of their own, as of the same inputs: their records carry the same tag as the batch's.
            passes = 0
            while cursor.generation == admitted.generation and (left := _left_due(step, owned(), expected_next)):
                await run(left)
                passes += 1
            if passes:
                log.info("journey: %d passes without input for customers left due", passes)
            _gauges(step, owned(), journey_metrics, signal_metrics)
            timer.observe(time.perf_counter() - started)

    async def run(by_partition: Mapping[int, list[Message]]) -> None:
        """One pass over partitions' messages (none: only the customers left due): process, publish, then store."""
        outs: list[JourneyOutput] = []
        writes: dict[int, list[tuple[bytes, bytes]]] = {}  # partition -> its records written by this pass
        erased: dict[int, list[bytes]] = {}  # partition -> customers whose records this pass deletes
        for partition, messages in sorted(by_partition.items()):
            if messages and (expected_next.get(partition) != messages[0][0] or partition not in step.partitions):
                messages[:0] = await restore(partition, messages[0][0])
            out = await _process(step, partition, messages, partial(_body, records[partition]), due_per_pass)
            if messages:
                expected_next[partition] = messages[-1][0] + 1
            tag = expected_next[partition]
            written = writes[partition] = await _pack(out.states, tag)
            written.append((state_key(partition, partitions), pack(tag, None, out.partition_state)))
            erased[partition] = out.erased
            journey_metrics.watermark.get(str(partition)).set(out.watermark / 1000 if out.watermark > NEVER
                                                              else 0)  # fmt: skip
            outs.append(out)
        await _publish(outs, outputs, codec, partitions, retry, metrics)
        # The state last: a worker that dies before it leaves the state behind every output, and the replay
        # emits them again (same ids); the other way round, a replay would skip what was never published.
        tombstones: list[tuple[bytes | None, bytes | None]] = [(k, None) for keys in erased.values() for k in keys]
        await publish_all([(state_topic, [*(kv for written in writes.values() for kv in written), *tombstones])],
                          retry, metrics.infra_retries)  # fmt: skip
        for partition, written in writes.items():
            await _update(records[partition], written)
            for key in erased.get(partition, ()):
                records[partition].pop(key, None)

    return app.agent(source_topic, name="journey", concurrency=1)(journey)


def freeze_heap_once() -> None:
    """Move what the process holds once its first partition is restored (modules, the app, its clients) out of
    the garbage collector's full collections, for good: each of them walks every tracked object, and that base
    alone holds the loop for tens of milliseconds (the records and due times are not tracked; docs/operations.md).
    Once only: an object frozen while alive that later becomes cyclic garbage is never freed."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()


def _left_due(step: JourneyStep, owned: set[int], handled: Mapping[int, int]) -> dict[int, list[Message]]:
    """A pass without messages for each partition owned and handled here that has customers left due."""
    return {p: [] for p in sorted(owned & handled.keys()) if step.due_left(p)}


async def _process(
    step: JourneyStep, partition: int, messages: Sequence[Message], load: Callable[[bytes], bytes | None],
    max_due: int | None = None,
) -> JourneyOutput:  # fmt: skip
    """``step.process`` with a turn for the other tasks of the loop between slices (JourneyStep.slices)."""
    out = JourneyOutput()
    for _ in step.slices(partition, messages, load, out, max_due=max_due):
        await asyncio.sleep(0)
    return out


async def _pack(states: Mapping[bytes, tuple[bytes, int | None]], tag: int) -> list[tuple[bytes, bytes]]:
    """The records of a batch's customers, packed in slices (a day crossing writes every scored customer)."""
    written: list[tuple[bytes, bytes]] = []
    items = iter(states.items())  # not a list of them: that alone holds the loop for 0.2 s per million
    while chunk := [(key, pack(tag, due, body)) for key, (body, due) in islice(items, RECORD_SLICE)]:
        written.extend(chunk)
        await asyncio.sleep(0)
    return written


async def _update(store: dict[bytes, bytes], written: Sequence[tuple[bytes, bytes]]) -> None:
    for start in range(0, len(written), RECORD_SLICE):
        store.update(written[start : start + RECORD_SLICE])
        await asyncio.sleep(0)


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
        (outputs["order-lines"], gather(lambda o: o.journey.order_lines)),
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
