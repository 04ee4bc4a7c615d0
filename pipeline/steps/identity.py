"""Identity steps: routing canonical events (resolve locally, or send links to the single writer; the ingest
agents call the router on each batch they canonicalised) and the writer's application of links in the one
total order of the ``identity-links`` topic.

Guarantees: every canonical event is emitted exactly once per processing to ``resolved-events`` — directly by
the router, or by the writer for link events, after the link is applied, keyed by the surviving profile.
The writer is deterministic: replaying ``identity-links`` from offset 0 rebuilds the same graph, which is how
a writer that takes over the partition recovers (``rebuild``). Not guaranteed: that a router has already seen
the assignment a link just made; such events land on the implicit profile and are folded in by the merge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.identity import IdentityPolicy, IdentityState, apply_link, resolve
from pipeline.domain.identity_rules import link_candidates
from pipeline.identity.replica import AssignmentReplica, encode_assignment
from pipeline.metrics import IdentityMetrics
from schemas.codec import AvroCodec

KeyValue = tuple[bytes | None, bytes]
LINKS_KEY = b"links"


@dataclass(slots=True)
class RouteOutput:
    """Router results: events resolved here, and link events for the writer."""

    resolved: list[tuple[bytes, bytes]] = field(default_factory=list)
    links: list[KeyValue] = field(default_factory=list)


class IdentityRouter:
    """Resolves ordinary events against the local replica; passes link events to the writer."""

    def __init__(self, replica: AssignmentReplica, metrics: IdentityMetrics) -> None:
        self._replica = replica
        self._routed = metrics.routed

    def route(self, records: Sequence[Mapping[str, Any]], values: Sequence[bytes]) -> RouteOutput:
        """Route each canonical event (``records[i]`` is ``values[i]`` decoded): resolved here, or a link."""
        out = RouteOutput()
        lookup, shared = self._replica.lookup, self._replica.shared
        links = resolved = 0
        for record, value in zip(records, values, strict=True):
            if link_candidates(record) is not None:
                out.links.append((LINKS_KEY, value))
                links += 1
                continue
            profile, _node = resolve(lookup, shared, record)
            out.resolved.append((profile.encode(), value))
            resolved += 1
        self._routed.get("link").inc(links)
        self._routed.get("resolved").inc(resolved)
        return out


@dataclass(slots=True)
class WriterOutput:
    """Writer results per output topic."""

    assignments: list[KeyValue] = field(default_factory=list)
    merges: list[KeyValue] = field(default_factory=list)
    controls: list[KeyValue] = field(default_factory=list)
    resolved: list[KeyValue] = field(default_factory=list)


class IdentityWriter:
    """Applies links in log order. Holds the whole graph; ``next_offset`` is the log position it reflects."""

    def __init__(self, codec: AvroCodec, policy: IdentityPolicy, metrics: IdentityMetrics) -> None:
        self._codec = codec
        self._policy = policy
        self._metrics = metrics
        self.state = IdentityState()
        self.next_offset = 0

    def rebuild(self, values: Iterable[bytes], upto_offset: int) -> int:
        """Replace the state by replaying the log's first ``upto_offset`` values silently; returns links applied."""
        self.state = IdentityState()
        applied = 0
        for value in values:
            link = link_candidates(self._codec.decode(value).record)
            if link is not None:
                apply_link(self.state, link, self._policy)
                applied += 1
        self.next_offset = upto_offset
        return applied

    def process_batch(self, items: Sequence[tuple[int, bytes]]) -> WriterOutput:
        """Apply each (offset, canonical event bytes) in order and collect every output."""
        out = WriterOutput()
        for offset, value in items:
            record = self._codec.decode(value).record
            link = link_candidates(record)
            survivor: str | None = None
            if link is not None:
                outcome = apply_link(self.state, link, self._policy)
                self._metrics.links.get(link.rule).inc()
                survivor = outcome.survivor
                for node, profile in outcome.changes.items():
                    out.assignments.append((node.encode(), encode_assignment(profile)))
                for node in outcome.newly_shared:
                    out.assignments.append((node.encode(), encode_assignment(None)))
                    self._metrics.shared.inc()
                for m in outcome.merges:
                    merge = {"old_id": m.old_id, "new_id": m.new_id, "rule": m.rule, "event_id": m.event_id,
                             "event_time": m.event_time, "reason": m.reason}  # fmt: skip
                    out.merges.append((m.old_id.encode(), self._codec.encode("identity-merge", merge)))
                    control = {"kind": "merge", "old_id": m.old_id, "new_id": m.new_id, "state_json": None,
                               "event_id": m.event_id}  # fmt: skip
                    out.controls.append((m.old_id.encode(), self._codec.encode("journey-control", control)))
                    self._metrics.merges.inc()
            if survivor is None:
                survivor, _ = resolve(self.state.assignments.get, self.state.shared, record)
            out.resolved.append((survivor.encode(), value))
            self.next_offset = offset + 1
        return out
