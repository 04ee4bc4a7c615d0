"""Identity steps: routing canonical events (resolve locally as of the event's position, or send links to the
single writer; the ingest agents call the router on each batch they canonicalised) and the writer, which applies
links in event-time order once its watermark passes them.

Guarantees: every canonical event is emitted exactly once per processing to ``resolved-events`` -- directly by
the router, or by the writer for link events, after the link is applied, keyed by the surviving profile. The
writer applies links in :class:`~pipeline.domain.eventtime.Pos` order below the minimum progress of every input
partition, so the graph, survivor ids, shared identifiers and the position of every merge are a function of the
links, whatever their arrival order or the number of workers (docs/time.md). Replaying ``identity-links`` from
offset 0 rebuilds the same state, which is how a writer that takes over the partition recovers
(:meth:`IdentityWriter.rebuild`). Not guaranteed: that a router has already seen the assignments up to an
event's position; such events land on a profile a merge absorbed and the journey forwards them.
"""

from __future__ import annotations

import bisect
import heapq
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline import __version__
from pipeline.clock import Clock, SystemClock
from pipeline.domain.eventtime import NEVER, RANK_CONTROL, Pos, Sources
from pipeline.domain.identity import IdentityPolicy, IdentityState, apply_link, resolve
from pipeline.domain.identity_rules import link_candidates, nodes_of
from pipeline.domain.records import FailureType, Rejection, failed_event_record, failed_key
from pipeline.identity.replica import HISTORY_LIMIT, WATERMARK_KEY, AssignmentReplica, encode_assignment
from pipeline.metrics import IdentityMetrics
from pipeline.privacy.linklog import Message, for_replay
from pipeline.privacy.tokens import Tokens
from pipeline.steps.bundles import Entry, Mark, read
from schemas.codec import AvroCodec

KeyValue = tuple[bytes | None, bytes | None]
log = logging.getLogger(__name__)
LINKS_KEY = b"links"
WRITER = "writer"


@dataclass(slots=True)
class Split:
    """A batch's canonical events: link events for the writer, and the others to route once resolvable."""

    links: list[Entry] = field(default_factory=list)
    records: list[Mapping[str, Any]] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    positions: list[Pos] = field(default_factory=list)


class IdentityRouter:
    """Resolves ordinary events against the local replica as of their position; passes link events on."""

    def __init__(self, replica: AssignmentReplica, metrics: IdentityMetrics) -> None:
        self._replica = replica
        self._routed = metrics.routed

    def split(self, records: Sequence[Mapping[str, Any]], values: Sequence[bytes], positions: Sequence[Pos]) -> Split:
        """Link events (``records[i]`` is ``values[i]`` decoded, taking effect at ``positions[i]``) and the rest."""
        out = Split()
        for record, value, pos in zip(records, values, positions, strict=True):
            if link_candidates(record) is not None:
                out.links.append(Entry(LINKS_KEY, value, pos.order_time, pos.event_time, pos.event_id))
            else:
                out.records.append(record)
                out.values.append(value)
                out.positions.append(pos)
        self._routed.get("link").inc(len(out.links))
        return out

    def route(
        self, records: Sequence[Mapping[str, Any]], values: Sequence[bytes], positions: Sequence[Pos]
    ) -> list[Entry]:
        """Entries keyed by the profile each event belongs to at its position. Exact only once the replica's
        watermark is above every position (the caller waits for that)."""
        out = []
        for record, value, pos in zip(records, values, positions, strict=True):
            profile, _node = self._replica.resolve_at(record, pos)
            out.append(Entry(profile.encode(), value, pos.order_time, pos.event_time, pos.event_id))
        self._routed.get("resolved").inc(len(out))
        return out


@dataclass(slots=True)
class WriterOutput:
    """Writer results per output topic; ``marks``: the writer's own progress, for every journey partition."""

    assignments: list[KeyValue] = field(default_factory=list)
    merges: list[KeyValue] = field(default_factory=list)
    resolved: list[Entry] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    failed: list[KeyValue] = field(default_factory=list)


class IdentityWriter:
    """Applies links in event-time order. Holds the whole graph, the links its watermark has not passed yet,
    and each identifier's assignment history; ``next_offset`` is the log position it reflects."""

    def __init__(
        self, codec: AvroCodec, policy: IdentityPolicy, metrics: IdentityMetrics, expected_sources: Iterable[str],
        seal: Callable[[bytes], str], clock: Clock | None = None, tokens: Tokens | None = None,
    ) -> None:  # fmt: skip
        self._codec = codec
        self._tokens = tokens
        self._seal = seal
        self._clock = clock or SystemClock()
        self._policy = policy
        self._metrics = metrics
        self._expected = frozenset(expected_sources)
        self.reset()

    def reset(self) -> None:
        self.state = IdentityState()
        self.sources = Sources(self._expected)
        self.pending: list[tuple[Pos, bytes]] = []
        self.applied: set[str] = set()  # link events applied (a copy published again after a restart is skipped)
        self.history: dict[str, list[tuple[Pos, str | None]]] = {}
        self.next_offset = 0
        self.published = NEVER
        self.erased: set[str] = set()  # tokens of erased identifiers: their link events are ignored

    def rebuild(self, messages: Iterable[Message], upto_offset: int) -> int:
        """Replace the state by replaying the log's messages below ``upto_offset`` silently (each once, replaced
        copies in their original's place, without erased identifiers: ``linklog.for_replay``); returns links
        applied."""
        self.reset()
        kept, self.erased = for_replay(m for m in messages if m[0] < upto_offset)
        applied = self.state.seq
        for offset, key, value in kept:
            self.process_batch([(offset, key, value)])
        self.next_offset = upto_offset
        self.published = NEVER  # announce the watermark again
        return self.state.seq - applied

    def erase(self, messages: Iterable[Message], upto_offset: int) -> WriterOutput:
        """Rebuild after an erasure marker (``upto_offset`` is just past it) and publish what changed: every
        identifier whose history differs, and a tombstone for each one the graph no longer has."""
        before = {node: list(history) for node, history in self.history.items()}
        self.rebuild(messages, upto_offset)
        out = WriterOutput()
        for node in sorted(before.keys() | self.history.keys()):
            now = self.history.get(node)
            if now is None:
                out.assignments.append((node.encode(), None))
            elif now != before.get(node):
                out.assignments.append((node.encode(), encode_assignment(now)))
        return out

    def process_batch(self, messages: Sequence[tuple[int, bytes, bytes]]) -> WriterOutput:
        """Take (offset, key, value) messages of identity-links, apply what the watermark passed, collect outputs."""
        out = WriterOutput()
        for offset, key, value in messages:
            entries, marks = read(self._codec, key, value)
            for mark in marks:
                self.sources.update(mark.source, mark.mark, mark.idle)
            for e in entries:
                pos = self._pos(e)
                heapq.heappush(self.pending, (pos, e.value))
            self.next_offset = offset + 1
        watermark = self.sources.watermark()
        changed: dict[str, None] = {}
        while self.pending and self.pending[0][0].order_time < watermark:
            pos, value = heapq.heappop(self.pending)
            if pos.event_id in self.applied:
                continue
            self.applied.add(pos.event_id)
            before = len(out.merges), len(out.resolved)
            try:
                self._apply(pos, value, changed, out)
            except Exception as exc:  # a bug or a link no rule foresaw: keep it as failed, go on with the others
                del out.merges[before[0] :], out.resolved[before[1] :]
                self._broken(pos, value, exc, out)
        for node in changed:
            out.assignments.append((node.encode(), encode_assignment(self.history[node])))
        if watermark > self.published:
            self.published = watermark
            out.assignments.append((WATERMARK_KEY, json.dumps({"watermark": watermark}).encode()))
            out.marks.append(Mark(WRITER, watermark))
        return out

    def _broken(self, pos: Pos, value: bytes, exc: Exception, out: WriterOutput) -> None:
        """A link event whose application raised becomes a ``processing_error`` failed event. What the link
        changed in the graph before the error stays (replaying the log repeats it exactly), nothing of it is
        published, and the event reaches no journey."""
        log.exception("identity writer: link event %s failed; kept as a failed event", pos.event_id)
        try:
            record = self._codec.decode(value).record
            at = (record["source_topic"], record["source_partition"], record["source_offset"])
        except Exception:  # it does not even decode: name it by its position
            at = ("identity-links", 0, 0)
        rejection = Rejection(FailureType.PROCESSING_ERROR, "unexpected_exception", repr(exc)[:1000],
                              event_id=pos.event_id)  # fmt: skip
        failed = failed_event_record(rejection, *at, LINKS_KEY, value, f"identity/{__version__}", self._clock.now_ms(),
                                     seal=self._seal)  # fmt: skip
        out.failed.append((failed_key(*at), self._codec.encode("failed-event", failed)))
        self._metrics.processing_errors.inc()

    def _pos(self, e: Entry) -> Pos:
        if e.order_time:
            return Pos(e.order_time, e.event_time, 2, e.event_id)
        record = self._codec.decode(e.value).record  # a link event without a position: its own event time
        return Pos(record["event_time"], record["event_time"], 2, record["event_id"])

    def _apply(self, pos: Pos, value: bytes, changed: dict[str, None], out: WriterOutput) -> None:
        record = self._codec.decode(value).record
        if self.erased and self._tokens is not None and self._tokens.any_node(nodes_of(record), self.erased):
            self._metrics.suppressed.inc()  # an erased person's link event: it takes no effect anywhere
            return
        link = link_candidates(record)
        survivor: str | None = None
        if link is not None:
            outcome = apply_link(self.state, link, self._policy, created=tuple(pos))
            self._metrics.links.get(link.rule).inc()
            survivor = outcome.survivor
            at = Pos(pos.order_time, pos.event_time, RANK_CONTROL, pos.event_id)
            for node, profile in outcome.changes.items():
                self._record(node, at, profile, changed)
            for node in outcome.newly_shared:
                self._record(node, at, None, changed)
                self._metrics.shared.inc()
            for m in outcome.merges:
                merge = {"old_id": m.old_id, "new_id": m.new_id, "rule": m.rule, "event_id": m.event_id,
                         "event_time": m.event_time, "reason": m.reason}  # fmt: skip
                out.merges.append((m.old_id.encode(), self._codec.encode("identity-merge", merge)))
                aliases = outcome.aliases.get(m.old_id, [])
                self._control(out, "absorbed", m.old_id, m.old_id, m.new_id, pos, [])
                self._control(out, "absorb", m.new_id, m.old_id, m.new_id, pos, aliases)
                for alias in aliases:
                    self._control(out, "redirect", alias, alias, m.new_id, pos, [])
                self._metrics.merges.inc()
        if survivor is None:
            survivor, _ = resolve(self.state.assignments.get, self.state.shared, record)
        out.resolved.append(Entry(survivor.encode(), value, pos.order_time, pos.event_time, pos.event_id))

    def _record(self, node: str, at: Pos, profile: str | None, changed: dict[str, None]) -> None:
        history = self.history.setdefault(node, [])
        if history and history[-1] == (at, profile):
            return
        bisect.insort(history, (at, profile), key=lambda change: change[0])
        del history[:-HISTORY_LIMIT]
        changed[node] = None

    def _control(
        self, out: WriterOutput, kind: str, to: str, old_id: str, new_id: str, pos: Pos, aliases: list[str]
    ) -> None:
        record = {"kind": kind, "old_id": old_id, "new_id": new_id, "state_json": None, "event_id": pos.event_id,
                  "order_time": pos.order_time, "event_time": pos.event_time, "aliases": aliases}  # fmt: skip
        value = self._codec.encode("journey-control", record)
        out.resolved.append(Entry(to.encode(), value, pos.order_time, pos.event_time, f"{pos.event_id}/{old_id}"))
