"""Cheap questions to the broker while a measurement runs: how big are the topics, is the group stable.

``TopicCounter`` keeps one kafka-python consumer open (no group) and reads end offsets (one ListOffsets round
trip per call, about a millisecond on loopback); partitions are discovered per topic, and topics that do not
exist yet (Faust changelogs appear at start-up) are picked up by ``refresh()``. It counts messages, so it cannot
tell a redelivered duplicate from a new output. Nothing here commits offsets or joins a group.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient


class TopicCounter:
    """End offsets (= message counts, nothing is deleted during a run) of a set of topics."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False)
        self._topics = list(dict.fromkeys(topics))
        self._tps: list[Any] = []
        self.refresh()

    def refresh(self, extra_prefix: str | None = None) -> None:
        """Re-discover partitions; with ``extra_prefix``, also count every topic whose name starts with it."""
        if extra_prefix:
            found = [t for t in self._consumer.topics() if t.startswith(extra_prefix)]
            self._topics += [t for t in sorted(found) if t not in self._topics]
        tps = []
        for topic in self._topics:
            for partition in sorted(self._consumer.partitions_for_topic(topic) or ()):
                tps.append(TopicPartition(topic, partition))
        self._tps = tps

    def ends(self) -> dict[Any, int]:
        return {tp: int(off) for tp, off in self._consumer.end_offsets(self._tps).items()} if self._tps else {}

    def per_topic(self) -> dict[str, int]:
        totals = dict.fromkeys(self._topics, 0)
        for tp, off in self.ends().items():
            totals[tp.topic] += off
        return totals

    def total(self, topics: list[str] | None = None) -> int:
        counts = self.per_topic()
        return sum(counts.get(t, 0) for t in topics) if topics is not None else sum(counts.values())

    def ends_of(self, tps: list[Any]) -> dict[Any, int]:
        return {tp: int(off) for tp, off in self._consumer.end_offsets(tps).items()} if tps else {}

    def close(self) -> None:
        self._consumer.close()


class GroupProbe:
    """Membership of one consumer group (a Faust app id)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="omnistream-bench")
        self.group = group

    def stable_members(self) -> int:
        """Members of the group when it is Stable, else 0 (joining, rebalancing, or not there yet)."""
        try:
            info = self._admin.describe_groups([self.group]).get(self.group) or {}
        except Exception:  # the coordinator may not know the group yet; that is "not stable"
            return 0
        if info.get("group_state") != "Stable":
            return 0
        return len(info.get("members") or [])

    def close(self) -> None:
        self._admin.close()
