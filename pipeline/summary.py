"""Counting what the pipeline produced, for the demo and for evaluations."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from pipeline.topic_reader import iter_topic
from schemas.codec import AvroCodec


@dataclass
class OutputSummary:
    """Canonical events by channel/type and ingest's failed events by type (later stages' apart), from Kafka."""

    canonical_by_channel: Counter[str] = field(default_factory=Counter)
    canonical_by_type: Counter[tuple[str, str]] = field(default_factory=Counter)
    failed_by_type: Counter[str] = field(default_factory=Counter)
    failed_by_topic_type: Counter[tuple[str, str]] = field(default_factory=Counter)
    canonical_event_ids: Counter[str] = field(default_factory=Counter)
    later_failed_by_type: Counter[str] = field(default_factory=Counter)

    @property
    def canonical_total(self) -> int:
        return sum(self.canonical_by_channel.values())

    @property
    def failed_total(self) -> int:
        return sum(self.failed_by_type.values())

    @property
    def duplicate_event_ids(self) -> int:
        """Event ids published more than once (0 in a run without restarts)."""
        return sum(n - 1 for n in self.canonical_event_ids.values() if n > 1)


def summarise(bootstrap: str, canonical_topic: str, failed_topic: str, codec: AvroCodec) -> OutputSummary:
    """Read both output topics completely and count them."""
    summary = OutputSummary()
    for msg in iter_topic(bootstrap, canonical_topic):
        record = codec.decode(msg.value).record
        summary.canonical_by_channel[record["channel"]] += 1
        summary.canonical_by_type[record["channel"], record["event_type"]] += 1
        summary.canonical_event_ids[record["event_id"]] += 1
    for msg in iter_topic(bootstrap, failed_topic):
        record = codec.decode(msg.value).record
        if not record["processor"].startswith("ingest/"):  # e.g. journey: later than the session grace
            summary.later_failed_by_type[record["failure_type"]] += 1
            continue
        summary.failed_by_type[record["failure_type"]] += 1
        summary.failed_by_topic_type[record["source_topic"], record["failure_type"]] += 1
    return summary
