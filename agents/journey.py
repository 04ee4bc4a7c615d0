"""Journey agent: resolved-events -> sessions, one state record per customer in a Faust table, written once
per micro-batch; plus the timer sweep that closes sessions of customers who went silent.

The table uses Kafka's partitioner on the raw profile id, the same key bytes and partition count as
resolved-events, so a customer's state lives on the partition (and worker) that processes its events.
"""

from __future__ import annotations

import time
from typing import Any

from agents.batching import PARTITIONER
from agents.publish import RetryPolicy, publish_all
from pipeline.clock import Clock
from pipeline.metrics import IngestMetrics, JourneyMetrics
from pipeline.metrics_journey import JourneySignalMetrics
from pipeline.steps.journey import JourneyItem, JourneyOutput, JourneyStep


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition for ``key`` (murmur2, as the Java client and aiokafka compute it), cached:
    the sweep asks it for every customer of the table each time it runs."""
    return PARTITIONER.partition("", key, partitions)


def register_journey(
    app: Any, step: JourneyStep, table: Any, source: str, outputs: dict[str, Any], clock: Clock,
    metrics: IngestMetrics, journey_metrics: JourneyMetrics, retry: RetryPolicy, batch_size: int,
    within_s: float, sweep_interval_s: float, signal_metrics: JourneySignalMetrics | None = None,
) -> Any:  # fmt: skip
    """Register the journey agent and its sweep timer on ``app``."""
    source_topic = app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw")  # fmt: skip
    timer = metrics.batch_seconds.get("journey")

    async def emit(out: JourneyOutput) -> None:
        for key, value in out.states.items():
            table[key] = value
        first = [(outputs["sessions"], out.sessions), (outputs["failed"], out.failed),
                 (outputs["resolved"], out.forwards)]  # fmt: skip
        if "journey-stages" not in outputs:
            await publish_all(first, retry, metrics.infra_retries)
            return
        # Stages before signals: a consumer sees the stage a signal refers to.
        await publish_all([*first, (outputs["journey-stages"], out.journey.transitions)], retry, metrics.infra_retries)
        then = [(outputs["signals"], out.journey.signals), (outputs["customer-profiles"], out.journey.profiles)]
        await publish_all(then, retry, metrics.infra_retries)

    async def journey(stream: Any) -> None:
        async for events in stream.noack_take(batch_size, within=within_s):
            started = time.perf_counter()
            items = [JourneyItem(e.message.key, e.message.value, e.message.partition, e.message.offset)
                     for e in events]  # fmt: skip
            await emit(step.process_batch(items, table.get, clock.now_ms()))
            for event in events:
                await stream.ack(event)
            timer.observe(time.perf_counter() - started)

    async def sweep() -> None:
        assigned = {tp.partition for tp in app.consumer.assignment() if tp.topic == source}
        if not assigned:
            return
        partitions = app.conf.topic_partitions
        out = JourneyOutput()
        now = clock.now_ms()
        open_sessions = swept = 0
        for key, raw in list(table.data.items()):
            if raw and partition_of(key, partitions) in assigned:
                open_sessions += step.sweep_state(key, raw, now, out)
                swept += 1
        journey_metrics.open_sessions.set(open_sessions)
        if signal_metrics is not None:
            signal_metrics.churn_risk_customers.set(out.churn_risk)
            signal_metrics.state_bytes.set(out.state_bytes / swept if swept else 0)
        await emit(out)

    app.timer(interval=sweep_interval_s, name="journey-sweep")(sweep)
    return app.agent(source_topic, name="journey", concurrency=1)(journey)
