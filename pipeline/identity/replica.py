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
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.domain.eventtime import NEVER, Pos
from pipeline.domain.identity import History, resolve_at
from pipeline.topic_replica import CompactedReplica

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


class AssignmentReplica(CompactedReplica):
    """Local identifier -> history map fed by the assignments topic; ``assignments``/``shared`` are the latest."""

    def __init__(self, bootstrap: str, topic: str, client_config: Mapping[str, Any] | None = None) -> None:
        super().__init__(bootstrap, topic, client_config, name="identity-replica")
        self.history: dict[str, list[tuple[Pos, str | None]]] = {}
        self.assignments: dict[str, str] = {}
        self.shared: set[str] = set()
        self.watermark = NEVER

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
            self.shared.discard(node)
            return
        history = decode_assignment(value)
        self.history[node] = history
        latest = history[-1][1]
        if latest is None:
            self.assignments.pop(node, None)
            self.shared.add(node)
        else:
            self.assignments[node] = latest
