"""What the identity and session stages produced, read back from Kafka (demo and evaluation output)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from pipeline.domain.sessions_batch import latest_versions
from pipeline.evaluate.sessions import version_from_record
from pipeline.settings import Settings
from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec


@dataclass(frozen=True)
class JourneySummary:
    sessions: int
    cross_channel: int
    top_paths: list[tuple[str, int]]
    profiles: int
    merges: int
    revenue_minor: int


def summarise_journeys(settings: Settings, codec: AvroCodec, top: int = 6) -> JourneySummary:
    """Latest session versions, channel paths, resolved profiles and merges of a run."""
    records: list[Any] = [codec.decode(m.value).record for m in
                          iter_topic(settings.kafka_bootstrap, settings.topic("sessions"))]  # fmt: skip
    sessions = latest_versions(version_from_record(r) for r in records)
    paths = Counter(s.channel_path for s in sessions)
    merges = sum(1 for _ in iter_topic(settings.kafka_bootstrap, settings.topic("identity-merges")))
    return JourneySummary(
        sessions=len(sessions),
        cross_channel=sum(1 for s in sessions if len(s.channels) > 1),
        top_paths=paths.most_common(top),
        profiles=len({s.customer_id for s in sessions}),
        merges=merges,
        revenue_minor=sum(s.revenue_minor for s in sessions),
    )
