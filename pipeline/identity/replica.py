"""Every worker's local copy of the identifier -> profile assignments, with their history in event time.

The single identity writer publishes each changed identifier to the compacted ``identity-assignments`` topic
(key: node; value: the node's recent assignment history as JSON ``[[order_time, event_time, rank, event_id,
profile or null], ...]``, null meaning shared from then on), and its watermark under :data:`WATERMARK_KEY`.
Each worker reads that topic from the beginning in a background thread (no consumer group, so every worker
sees everything).

Guarantees: after ``wait_caught_up`` returns True, the replica holds at least every assignment published
before the call; :meth:`resolve_at` answers as of a position in event time, exactly for positions below
:attr:`watermark`. Not guaranteed: freshness above it -- an event resolved there may land on a profile a merge
at an earlier position absorbed; the journey forwards it to the survivor (docs/identity.md, docs/time.md).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from pipeline.domain.eventtime import NEVER, Pos
from pipeline.domain.identity import History, resolve_at

log = logging.getLogger(__name__)

ASSIGNED = b"="
SHARED = b"!"
WATERMARK_KEY = b"\x00writer-watermark"
HISTORY_LIMIT = 8  # changes kept per identifier (a profile is rarely merged more often)


def encode_assignment(history: Sequence[tuple[Pos, str | None]]) -> bytes:
    """Value of an assignment record: the node's last :data:`HISTORY_LIMIT` changes."""
    return json.dumps([[*pos, pid] for pos, pid in history[-HISTORY_LIMIT:]], separators=(",", ":")).encode()


def decode_assignment(value: bytes) -> list[tuple[Pos, str | None]]:
    """Inverse of :func:`encode_assignment`; also reads the single-value form (``=<id>`` or ``!``)."""
    if value[:1] == ASSIGNED:
        return [(Pos(NEVER, NEVER, 0, ""), value[1:].decode())]
    if value[:1] == SHARED:
        return [(Pos(NEVER, NEVER, 0, ""), None)]
    return [(Pos(*e[:4]), e[4]) for e in json.loads(value)]


class AssignmentReplica:
    """Local identifier -> history map fed by the assignments topic; ``assignments``/``shared`` are the latest."""

    def __init__(self, bootstrap: str, topic: str, client_config: Mapping[str, Any] | None = None) -> None:
        self._client_config = dict(client_config or {})
        self.history: dict[str, list[tuple[Pos, str | None]]] = {}
        self.assignments: dict[str, str] = {}
        self.shared: set[str] = set()
        self.watermark = NEVER
        self._bootstrap = bootstrap
        self._topic = topic
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="identity-replica", daemon=True)
        self.error: BaseException | None = None

    def lookup(self, node: str) -> str | None:
        return self.assignments.get(node)

    def history_of(self, node: str) -> History | None:
        return self.history.get(node)

    def resolve_at(self, event: Mapping[str, Any], pos: Pos) -> tuple[str, str]:
        """(profile id, node used) of an event as of ``pos``."""
        return resolve_at(self.history.get, event, pos)

    def apply(self, key: bytes, value: bytes | None) -> None:
        """Apply one record of the assignments topic (also used by tests and evaluation)."""
        if key == WATERMARK_KEY:
            if value:
                self.watermark = max(self.watermark, int(json.loads(value)["watermark"]))
            return
        node = key.decode()
        if not value:
            self.history.pop(node, None)
            self.assignments.pop(node, None)
            return
        history = decode_assignment(value)
        self.history[node] = history
        latest = history[-1][1]
        if latest is None:
            self.assignments.pop(node, None)
            self.shared.add(node)
        else:
            self.assignments[node] = latest

    @property
    def started(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def caught_up(self) -> bool:
        """Whether the replica has read the assignments topic to the end it had when it started."""
        return self._caught_up.is_set()

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
