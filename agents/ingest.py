"""Ingest agents: one Faust agent per channel topic, feeding micro-batches through ``IngestStep``.

The agent only moves data: it takes a batch without acknowledging it, lets the step decide every outcome,
publishes canonical and failed events, waits for the broker's acks, and only then acknowledges the inputs.
Concurrency is 1 per agent on purpose: Faust with concurrency > 1 can commit past an in-flight event.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from agents.publish import EXIT_INFRA, EXIT_UPSTREAM_BROKEN, RetryPolicy, fatal, publish_all
from pipeline.domain.guard import UpstreamBrokenError
from pipeline.metrics import IngestMetrics
from pipeline.steps.ingest import IngestStep, RawMessage
from schemas.errors import RegistryUnavailableError

log = logging.getLogger(__name__)


def register_ingest_agent(
    app: Any,
    step: IngestStep,
    canonical_topic: Any,
    failed_topic: Any,
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

    async def ingest(stream: Any) -> None:
        async for events in stream.noack_take(batch_size, within=batch_within_s):
            started = time.perf_counter()
            batch = [RawMessage(e.message.key, e.message.value, e.message.partition, e.message.offset) for e in events]
            try:
                out = step.process_batch(batch)
            except UpstreamBrokenError as exc:
                fatal(f"{step.source_topic}: {exc}", EXIT_UPSTREAM_BROKEN)
            except RegistryUnavailableError as exc:
                fatal(f"schema registry unavailable: {exc}", EXIT_INFRA)
            outputs = ((canonical_topic, out.canonical), (failed_topic, out.failed))
            await publish_all(outputs, retry, metrics.infra_retries)
            for event in events:
                await stream.ack(event)
            batch_timer.observe(time.perf_counter() - started)

    return app.agent(source, name=f"ingest-{step.channel}", concurrency=1)(ingest)
