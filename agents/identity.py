"""Identity agent: the link writer on identity-links (one partition, so exactly one worker at a time), and the
replica start-up the ingest agents (which route every canonical event, see agents/ingest.py) wait for. Both only
move data; the logic is in pipeline.steps.identity.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from agents.batching import PARTITIONER
from agents.cursor import faust_cursor
from agents.publish import RetryPolicy, publish, publish_all
from pipeline.identity.replica import AssignmentReplica
from pipeline.metrics import ChildCache
from pipeline.steps.bundles import bundle
from pipeline.steps.identity import IdentityWriter
from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec

log = logging.getLogger(__name__)


def _raw(app: Any, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


async def wait_for_replica(replica: AssignmentReplica, timeout_s: float = 120.0) -> None:
    """Start the worker's replica once and wait until it has caught up (the ingest agents call this first).

    Resolving against a half-loaded replica would scatter known customers onto implicit profiles."""
    if not replica.started:
        replica.start()
    if not await asyncio.get_running_loop().run_in_executor(None, replica.wait_caught_up, timeout_s):
        log.warning("identity replica not caught up after %.0fs (%r); resolving anyway", timeout_s, replica.error)


def register_identity_writer(
    app: Any, writer: IdentityWriter, codec: AvroCodec, bootstrap: str, source: str, outputs: dict[str, Any],
    partitions: int, retries: ChildCache[Any], retry: RetryPolicy, batch_size: int, within_s: float,
    client_config: Mapping[str, Any] | None = None,
) -> Any:  # fmt: skip
    """Apply links in event-time order; on taking over the partition, rebuild by replaying the log."""
    by_key: Callable[[bytes], int] = lambda key: PARTITIONER.partition("", key, partitions)  # noqa: E731

    cursor = faust_cursor(app, source, bootstrap, app.conf.id, client_config or {})

    async def write(stream: Any) -> None:
        async for batch in stream.noack_take(batch_size, within=within_s):
            admitted = await cursor.admit(batch)
            events = admitted.events
            if not events:
                continue
            first = events[0].message.offset
            if first != writer.next_offset:
                started = time.perf_counter()
                applied = await asyncio.get_running_loop().run_in_executor(None, _replay, writer, bootstrap,
                                                                           source, first, client_config)  # fmt: skip
                log.info("identity writer rebuilt from %d links up to offset %d in %.1fs", applied, first,
                         time.perf_counter() - started)  # fmt: skip
            out = writer.process_batch([(e.message.offset, e.message.key or b"", e.message.value) for e in events])
            # Assignments before events: a router that sees the resolved output later also sees the links.
            await publish(outputs["assignments"], out.assignments, retry, retries)
            resolved = bundle(codec, out.resolved, by_key, partitions, out.marks) if out.resolved or out.marks else []
            sends: list[tuple[Any, Sequence[tuple[bytes | None, bytes]]]] = [
                (outputs["merges"], out.merges), (outputs["resolved"], resolved), (outputs["failed"], out.failed)
            ]  # fmt: skip
            await publish_all(sends, retry, retries)
            await cursor.ack(stream, events, admitted.generation)

    return app.agent(_raw(app, source), name="identity-write", concurrency=1)(write)


def _replay(
    writer: IdentityWriter, bootstrap: str, topic: str, upto: int, client_config: Mapping[str, Any] | None
) -> int:
    messages: Iterator[tuple[int, bytes, bytes]] = (
        (m.offset, m.key or b"", m.value) for m in iter_topic(bootstrap, topic, client_config=client_config)
        if m.offset < upto
    )  # fmt: skip
    return writer.rebuild(messages, upto)
