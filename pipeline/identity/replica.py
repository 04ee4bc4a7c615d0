"""Every worker's local copy of the identifier -> profile assignments.

The single identity writer publishes each assignment change to the compacted ``identity-assignments`` topic
(key: node, value: ``=<profile id>`` or ``!`` for an identifier found to be shared). Each worker reads that
topic from the beginning in a background thread (no consumer group, so every worker sees everything).

Guarantees: after ``wait_caught_up`` returns True, the replica holds at least every assignment published
before the call. Not guaranteed: freshness after that — a link applied a moment ago may not be here yet, so an
event can be resolved to a profile that a merge absorbs later; the journey layer folds such state on the
merge (see docs/identity.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger(__name__)

ASSIGNED = b"="
SHARED = b"!"


def encode_assignment(profile_id: str | None) -> bytes:
    """Value of an assignment record: the profile id, or the shared marker when ``None``."""
    return SHARED if profile_id is None else ASSIGNED + profile_id.encode()


class AssignmentReplica:
    """Local identifier -> profile map fed by the assignments topic; ``shared`` holds shared identifiers."""

    def __init__(self, bootstrap: str, topic: str, client_config: Mapping[str, Any] | None = None) -> None:
        self._client_config = dict(client_config or {})
        self.assignments: dict[str, str] = {}
        self.shared: set[str] = set()
        self._bootstrap = bootstrap
        self._topic = topic
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="identity-replica", daemon=True)
        self.error: BaseException | None = None

    def lookup(self, node: str) -> str | None:
        return self.assignments.get(node)

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Apply one record of the assignments topic (also used by tests and by the writer itself)."""
        node = key.decode()
        if not value:
            self.assignments.pop(node, None)
        elif value[:1] == SHARED:
            self.assignments.pop(node, None)
            self.shared.add(node)
        else:
            self.assignments[node] = value[1:].decode()

    @property
    def started(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_caught_up(self, timeout_s: float) -> bool:
        return self._caught_up.wait(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
            except Exception as exc:  # the broker may be down: keep the map we have and try again
                self.error = exc
                log.warning("identity replica: %r; reconnecting in 2s", exc)
                time.sleep(2)

    def _consume(self) -> None:
        consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap.split(","), group_id=None, enable_auto_commit=False, **self._client_config
        )
        try:
            parts = consumer.partitions_for_topic(self._topic) or set()
            if not parts:
                raise LookupError(f"topic {self._topic} does not exist")
            tps = [TopicPartition(self._topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            positions = {tp: 0 for tp in tps}
            for tp in tps:
                consumer.seek(tp, 0)
            end = consumer.end_offsets(tps)
            while not self._stop.is_set():
                if not self._caught_up.is_set() and all(positions[tp] >= end[tp] for tp in tps):
                    self._caught_up.set()
                for tp, records in consumer.poll(timeout_ms=200).items():
                    for rec in records:
                        self.apply(rec.key, rec.value)
                    positions[tp] = consumer.position(tp)
        finally:
            consumer.close()
