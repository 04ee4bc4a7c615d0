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
from pipeline.metrics import ChildCache
from pipeline.privacy.linklog import Message, marker_tokens, replaces
from pipeline.steps.bundles import bundle
from pipeline.steps.identity import IdentityWriter, WriterOutput
from pipeline.topic_reader import iter_topic
from pipeline.topic_replica import CompactedReplica
from schemas.codec import AvroCodec

log = logging.getLogger(__name__)


def _raw(app: Any, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


async def wait_for_replica(replica: CompactedReplica, timeout_s: float = 120.0) -> None:
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
            # An erasure marker splits the batch: what precedes it is applied, then the graph is rebuilt without
            # the erased identifiers (from the log, so a replay decides the same), then the rest follows.
            chunk: list[tuple[int, bytes, bytes]] = []
            for e in events:
                key, offset, value = e.message.key or b"", e.message.offset, e.message.value
                if value is None:  # an erased bundle's tombstone: it was applied (or ignored) before
                    continue
                if marker_tokens(key, value) is None:
                    chunk.append((offset, key, value))
                    continue
                await _write(chunk)
                chunk = []
                out = await asyncio.get_running_loop().run_in_executor(None, _erase, writer, bootstrap, source,
                                                                       offset + 1, client_config)  # fmt: skip
                log.info("identity writer: erasure %s applied, %d identifiers changed", key.decode(errors="replace"),
                         len(out.assignments))  # fmt: skip
                await publish(outputs["assignments"], out.assignments, retry, retries)
            await _write(chunk)
            await cursor.ack(stream, events, admitted.generation)

    async def _write(messages: list[tuple[int, bytes, bytes]]) -> None:
        if not messages:
            return
        out = writer.process_batch(messages)
        # Assignments before events: a router that sees the resolved output later also sees the links.
        await publish(outputs["assignments"], out.assignments, retry, retries)
        resolved = bundle(codec, out.resolved, by_key, partitions, out.marks) if out.resolved or out.marks else []
        sends: list[tuple[Any, Sequence[tuple[bytes | None, bytes | None]]]] = [
            (outputs["merges"], out.merges), (outputs["resolved"], resolved), (outputs["failed"], out.failed)
        ]  # fmt: skip
        await publish_all(sends, retry, retries)

    return app.agent(_raw(app, source), name="identity-write", concurrency=1)(write)


def _log(bootstrap: str, topic: str, upto: int, client_config: Mapping[str, Any] | None) -> Iterator[Message]:
    return ((m.offset, m.key, m.value, replaces(m.headers))
            for m in iter_topic(bootstrap, topic, client_config=client_config) if m.offset < upto)  # fmt: skip


def _replay(
    writer: IdentityWriter, bootstrap: str, topic: str, upto: int, client_config: Mapping[str, Any] | None
) -> int:
    return writer.rebuild(_log(bootstrap, topic, upto, client_config), upto)


def _erase(
    writer: IdentityWriter, bootstrap: str, topic: str, upto: int, client_config: Mapping[str, Any] | None
) -> WriterOutput:
    return writer.erase(_log(bootstrap, topic, upto, client_config), upto)
