"""Ingest agents: one Faust agent per channel topic, feeding micro-batches through ``IngestStep`` and routing
the canonical events through identity resolution in the same hop.

The agent only moves data: it takes a batch without acknowledging it, lets the steps decide every outcome,
publishes canonical events (customer-events), failed events, resolved events (bundled per partition, see
pipeline/steps/bundles.py) and link events (to the single identity writer), waits for the broker's acks,
and only then acknowledges the inputs. One hop for ingest and routing: each event is consumed, decoded and
produced once less than with a separate router agent on customer-events.
Concurrency is 1 per agent on purpose: Faust with concurrency > 1 can commit past an in-flight event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from agents.batching import PARTITIONER, partition_count
from agents.identity import wait_for_replica
from agents.publish import EXIT_INFRA, EXIT_UPSTREAM_BROKEN, RetryPolicy, fatal, publish_all
from pipeline.domain.guard import UpstreamBrokenError
from pipeline.identity.replica import AssignmentReplica
from pipeline.metrics import IngestMetrics
from pipeline.steps.bundles import bundle
from pipeline.steps.identity import IdentityRouter
from pipeline.steps.ingest import IngestStep, RawMessage
from schemas.codec import AvroCodec
from schemas.errors import RegistryUnavailableError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOutputs:
    """The Faust topics an ingest agent publishes to."""

    canonical: Any
    failed: Any
    resolved: Any
    links: Any


def register_ingest_agent(
    app: Any,
    step: IngestStep,
    router: IdentityRouter,
    replica: AssignmentReplica,
    codec: AvroCodec,
    outputs: IngestOutputs,
    metrics: IngestMetrics,
    retry: RetryPolicy,
    batch_size: int,
    batch_within_s: float,
) -> Any:
    """Register the ingest agent of ``step.channel`` on ``app``; returns the Faust agent."""
    source = app.topic(
        step.source_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    batch_timer = metrics.batch_seconds.get(f"ingest:{step.channel}")
    resolved_name: str = outputs.resolved.get_topic_name()

    async def ingest(stream: Any) -> None:
        await wait_for_replica(replica)
        async for events in stream.noack_take(batch_size, within=batch_within_s):
            started = time.perf_counter()
            batch = [RawMessage(e.message.key, e.message.value, e.message.partition, e.message.offset) for e in events]
            try:
                out = step.process_batch(batch)
            except UpstreamBrokenError as exc:
                fatal(f"{step.source_topic}: {exc}", EXIT_UPSTREAM_BROKEN)
            except RegistryUnavailableError as exc:
                fatal(f"schema registry unavailable: {exc}", EXIT_INFRA)
            routed = router.route(out.records, [value for _key, value in out.canonical])
            partitions = await partition_count(outputs.resolved)
            by_partition = partial(PARTITIONER.partition, resolved_name, partitions=partitions)
            resolved = bundle(codec, routed.resolved, by_partition)
            sends = (
                (outputs.canonical, out.canonical),
                (outputs.failed, out.failed),
                (outputs.resolved, resolved),
                (outputs.links, routed.links),
            )
            await publish_all(sends, retry, metrics.infra_retries)
            for event in events:
                await stream.ack(event)
            batch_timer.observe(time.perf_counter() - started)

    return app.agent(source, name=f"ingest-{step.channel}", concurrency=1)(ingest)
