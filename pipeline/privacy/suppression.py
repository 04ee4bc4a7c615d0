"""The suppression list: tokens of erased identifiers and profiles, read by every worker and the sink.

The list is the compacted, single-partition topic ``privacy-suppressions``: key = a token
(:mod:`pipeline.privacy.tokens`), or for kind ``failed`` a failed event's input position; value = JSON
``{"request": <id>, "kind": "node" | "profile" | "failed", "at": <ms>}`` (no identifier, no profile id).
``omnistream privacy erase`` appends to it; nothing else writes it.

Guarantees: once :meth:`SuppressionReplica.wait_caught_up` returned, every token erased before the call is
known; later ones arrive within a poll (about 200 ms). Not guaranteed: that an event a worker canonicalised in
the moment before a token arrived is suppressed -- the journey and the sink check again (docs/privacy.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.topic_replica import CompactedReplica

NODE = "node"
PROFILE = "profile"
FAILED = "failed"  # key: a failed event's input position (``topic/partition/offset``), for the warehouse


@dataclass(frozen=True, slots=True)
class Suppression:
    """One record of the list."""

    token: str
    request: str
    kind: str
    at_ms: int

    def encode(self) -> tuple[bytes, bytes]:
        value = {"request": self.request, "kind": self.kind, "at": self.at_ms}
        return self.token.encode(), json.dumps(value, separators=(",", ":")).encode()

    @staticmethod
    def decode(key: bytes, value: bytes) -> Suppression:
        """Raises ``ValueError`` for a record that is not a suppression (bad JSON, unknown kind)."""
        doc = json.loads(value)
        if not isinstance(doc, dict) or doc.get("kind") not in (NODE, PROFILE, FAILED):
            raise ValueError(f"not a suppression record: {value[:80]!r}")
        return Suppression(key.decode(), str(doc["request"]), doc["kind"], int(doc.get("at", 0)))


class SuppressionReplica(CompactedReplica):
    """Every worker's copy of the list: ``nodes`` and ``profiles`` are sets of tokens. The thread only adds and
    discards single tokens, which is safe against membership tests on other threads; nobody iterates them."""

    def __init__(self, bootstrap: str, topic: str, client_config: Mapping[str, Any] | None = None) -> None:
        super().__init__(bootstrap, topic, client_config, name="suppression-replica")
        self.nodes: set[str] = set()
        self.profiles: set[str] = set()

    def apply(self, key: bytes, value: bytes | None) -> None:
        token = key.decode()
        if not value:  # withdrawn by an operator: the identifier counts again
            self.nodes.discard(token)
            self.profiles.discard(token)
            return
        try:
            entry = Suppression.decode(key, value)
        except (ValueError, KeyError):
            return  # a record this version does not understand suppresses nothing
        if entry.kind == NODE:
            self.nodes.add(token)
        elif entry.kind == PROFILE:
            self.profiles.add(token)
