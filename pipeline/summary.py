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
    #: event id -> the input positions it was published from (one position twice: a re-publication)
    sources: dict[str, set[tuple[str, int, int]]] = field(default_factory=dict)
    failed_republished: int = 0

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

    @property
    def republished(self) -> int:
        """Canonical events published again from the same input message: at-least-once delivery, after a
        rebalance or restart re-read uncommitted input (the journey and the warehouse keep one copy)."""
        return sum(n - len(self.sources[e]) for e, n in self.canonical_event_ids.items() if n > 1)

    @property
    def dedup_misses(self) -> int:
        """Event ids published from more than one input message: an upstream duplicate ingest did not drop."""
        return sum(len(s) - 1 for s in self.sources.values() if len(s) > 1)


def summarise(bootstrap: str, canonical_topic: str, failed_topic: str, codec: AvroCodec) -> OutputSummary:
    """Read both output topics completely and count them."""
    summary = OutputSummary()
    for msg in iter_topic(bootstrap, canonical_topic):
        record = codec.decode(msg.value).record
        summary.canonical_by_channel[record["channel"]] += 1
        summary.canonical_by_type[record["channel"], record["event_type"]] += 1
        summary.canonical_event_ids[record["event_id"]] += 1
        at = (record["source_topic"], record["source_partition"], record["source_offset"])
        summary.sources.setdefault(record["event_id"], set()).add(at)
    seen: set[tuple[str, int, int]] = set()
    for msg in iter_topic(bootstrap, failed_topic):
        if msg.value is None:  # deleted by erasure
            continue
        record = codec.decode(msg.value).record
        if not record["processor"].startswith("ingest/"):  # e.g. journey: later than the session grace
            summary.later_failed_by_type[record["failure_type"]] += 1
            continue
        at = (record["source_topic"], record["source_partition"], record["source_offset"])
        if at in seen:  # the same input rejected again after a re-read (at-least-once)
            summary.failed_republished += 1
            continue
        seen.add(at)
        summary.failed_by_type[record["failure_type"]] += 1
        summary.failed_by_topic_type[record["source_topic"], record["failure_type"]] += 1
    return summary
