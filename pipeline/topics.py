"""The pipeline's topics and how each must be created.

Most topics are keyed by customer and use ``settings.partitions``. Some are special:
``identity-links`` has ONE partition because identity merges must be decided by a single writer in one total
order (see docs/identity.md), and is compacted with a key per message, so that erasure can replace a message by
a copy without the erased person (pipeline/privacy/linklog.py); ``identity-assignments`` is compacted because
every worker reads it from the beginning into its local identifier -> profile table; ``failed-events`` is
compacted *and* time-limited, keyed by the input position, so erasure can delete the failed events of a person;
``privacy-suppressions`` (compacted) and ``privacy-audit`` (kept forever) belong to erasure (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.kafka_local import ensure_topics
from pipeline.security import settings_client_config
from pipeline.settings import CHANNELS, Settings

KEYED_TOPICS = (
    *CHANNELS,
    "customer-events",
    "failed-events",
    "resolved-events",
    "sessions",
    "identity-merges",
    "journey-stages",
    "signals",
    "customer-profiles",
    "order-lines",
)
FOREVER = {"retention.ms": "-1"}
COMPACTED = {"cleanup.policy": "compact"}
#: Replaced link bundles and failed events are compacted away within about a day (a segment rolls, then the
#: cleaner runs), not only when a segment happens to fill up.
ERASABLE = {"segment.ms": str(86_400_000), "min.cleanable.dirty.ratio": "0.01"}
#: The journey's state topic: compacted, and no record compacted away within an hour of being written (recovery
#: needs a key's previous record until the batch after it is committed; agents/state_table.py).
JOURNEY_STATE_CONFIGS = {**COMPACTED, "min.compaction.lag.ms": str(3_600_000)}


@dataclass(frozen=True)
class TopicSpec:
    """How one topic is created: name (with prefix), partitions, topic-level configs."""

    name: str
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the pipeline uses, with the partitioning and configs it relies on."""
    # The channel topics are the only place raw e-mails and phones live: they are kept no longer than needed
    # to replay (docs/privacy.md); everything derived from them is pseudonymised.
    raw = {"retention.ms": str(int(settings.input_retention_s * 1000))}
    failed = {"cleanup.policy": "compact,delete", **ERASABLE}
    specs = [TopicSpec(settings.topic(name), settings.partitions,
                       raw if name in CHANNELS else failed if name == "failed-events" else {})
             for name in KEYED_TOPICS]  # fmt: skip
    specs.append(TopicSpec(settings.topic("identity-links"), 1, {**FOREVER, **COMPACTED, **ERASABLE}))
    specs.append(TopicSpec(settings.topic("identity-assignments"), 1, COMPACTED))
    specs.append(TopicSpec(settings.topic("privacy-suppressions"), 1, {**FOREVER, **COMPACTED}))
    specs.append(TopicSpec(settings.topic("privacy-audit"), 1, FOREVER))
    return specs


def ensure_pipeline_topics(settings: Settings, bootstrap: str | None = None) -> dict[str, int]:
    """Create missing pipeline topics (idempotent) and check the partition counts that correctness needs.

    Raises ``RuntimeError`` when ``identity-links`` exists with more than one partition: identity would then
    be decided by several writers in different orders.
    """
    bootstrap = bootstrap or settings.kafka_bootstrap
    counts: dict[str, int] = {}
    client = settings_client_config(settings)
    for spec in topic_specs(settings):
        counts.update(
            ensure_topics(
                bootstrap,
                [spec.name],
                spec.partitions,
                settings.replication_factor,
                configs=spec.configs,
                client_config=client,
            )
        )
    links = settings.topic("identity-links")
    if counts.get(links, 1) != 1:
        raise RuntimeError(f"topic {links} has {counts[links]} partitions; it must have exactly 1 (single writer)")
    return counts


def partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Partitions of each of ``topics`` (missing topics are left out)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","), group_id=None,
                             enable_auto_commit=False, **settings_client_config(settings))  # fmt: skip
    try:
        return {t: len(parts) for t in topics if (parts := consumer.partitions_for_topic(t))}
    finally:
        consumer.close()


def journey_state_spec(settings: Settings) -> TopicSpec:
    """The journey's state topic: one per deployment (named after the app id), partitioned like resolved-events."""
    return TopicSpec(f"{settings.app_id}-journey-changelog", settings.partitions, JOURNEY_STATE_CONFIGS)


def ensure_journey_state_topic(settings: Settings) -> str:
    """Create the journey's state topic if missing (a worker does at start); its name. ``RuntimeError`` when it
    exists with another partition count than resolved-events: records would be looked up on the wrong partition."""
    spec = journey_state_spec(settings)
    counts = ensure_topics(settings.kafka_bootstrap, [spec.name], spec.partitions, settings.replication_factor,
                           configs=spec.configs, client_config=settings_client_config(settings))  # fmt: skip
    if counts.get(spec.name, spec.partitions) != spec.partitions:
        raise RuntimeError(f"topic {spec.name} has {counts[spec.name]} partitions; resolved-events has "
                           f"{spec.partitions}: they must match")  # fmt: skip
    return spec.name
