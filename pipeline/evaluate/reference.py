"""Batch reference of the identity and journey stages: what the warehouse must hold for a set of events.

Computed from the complete set of canonical events in one pass, in event-time order, written independently of
the streaming runtime (no watermarks, buffers, transfers, recovery): it shares only the pure domain functions
(the identity graph, the sessioniser, the stage machine, triggers and scoring) and follows the definitions in
docs/time.md:

1. Order times: per input partition, in offset order, an event's order time is the larger of its event time and
   the largest order time before it on that partition.
2. Identity: links are applied in :class:`~pipeline.domain.eventtime.Pos` order; every other event belongs to the
   profile its identifiers resolve to just before its position; a link event to its link's survivor.
3. Journeys: every customer's *instants* (distinct order times of its items and timers) are applied in time
   order; at an instant, what is due first (sessions closed, trigger timers, the daily re-score, time-based stage
   rules), then the items in position order, events between identity controls together. A merge at P hands the
   absorbed profile's record as of P to the survivor. Timers fire below the final watermark: the largest order
   time plus one (every source idle at the end).

The result is in warehouse form: the latest version of each session and profile, every transition, signal and
merge, customer ids followed through the merges (profiles of absorbed ids dropped).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.domain.eventtime import NEVER, RANK_CONTROL, RANK_EVENT, Pos
from pipeline.domain.identity import IdentityPolicy, IdentityState, apply_link, resolve, resolve_at
from pipeline.domain.identity_rules import link_candidates
from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.sessions import add_events, merge_states, sweep
from pipeline.domain.sessions import next_due as sessions_due
from pipeline.domain.sessions_state import CustomerSessions
from pipeline.domain.sessions_summary import SessionPolicy, SessionVersion
from pipeline.metrics_journey import journey_signal_metrics
from pipeline.steps.journey_profile import JourneyProfile, merge_profiles
from pipeline.steps.journey_signals import JourneySignals, SignalsConfig, SignalsOutput
from schemas.codec import AvroCodec


@dataclass(frozen=True)
class ReferenceConfig:
    session: SessionPolicy
    signals: SignalsConfig
    identity: IdentityPolicy


@dataclass
class Reference:
    """Warehouse rows the stream must end with (see the module docstring)."""

    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    transitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    merges: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    final: dict[str, str] = field(default_factory=dict)  # absorbed id -> surviving id
    watermark: int = NEVER


def order_positions(events: Iterable[CustomerEventRecord]) -> dict[str, Pos]:
    """Event id -> position, from each input partition's events in offset order (definition 1)."""
    by_source: dict[tuple[str, int], list[CustomerEventRecord]] = defaultdict(list)
    for e in events:
        by_source[e["source_topic"], e["source_partition"]].append(e)
    out: dict[str, Pos] = {}
    for part in by_source.values():
        mark = NEVER
        for e in sorted(part, key=lambda r: r["source_offset"]):
            t = e["event_time"]
            mark = max(mark, t)
            out[e["event_id"]] = Pos(mark, t, RANK_EVENT, e["event_id"])
    return out


def unique_events(events: Iterable[CustomerEventRecord]) -> list[CustomerEventRecord]:
    """One record per event id: the first one in its partition (duplicates published after a restart)."""
    first: dict[str, CustomerEventRecord] = {}
    for e in events:
        known = first.get(e["event_id"])
        if known is None or (e["source_topic"], e["source_partition"], e["source_offset"]) < (
            known["source_topic"], known["source_partition"], known["source_offset"]):  # fmt: skip
            first[e["event_id"]] = e
    return list(first.values())


@dataclass
class _Customer:
    sessions: CustomerSessions | None = None
    profile: JourneyProfile | None = None
    gone: bool = False
    items: list[tuple[Pos, str, Any]] = field(default_factory=list)  # (pos, kind, payload) sorted
    next: int = 0


class _Run:
    """Definition 3 over all customers at once."""

    def __init__(self, config: ReferenceConfig, codec: AvroCodec) -> None:
        self.policy = config.session
        self.signals = JourneySignals(config.signals, codec, journey_signal_metrics(CollectorRegistry()))
        self.codec = codec
        self.out = SignalsOutput()
        self.versions: list[SessionVersion] = []
        self.customers: dict[str, _Customer] = defaultdict(_Customer)
        self.handed: dict[tuple[str, Pos], tuple[CustomerSessions | None, JourneyProfile | None]] = {}

    def due(self, c: _Customer) -> int | None:
        times = []
        if c.next < len(c.items):
            times.append(c.items[c.next][0].order_time)
        if not c.gone and c.sessions is not None and (d := sessions_due(c.sessions, self.policy)) is not None:
            times.append(d)
        if not c.gone and c.profile is not None and (d := self.signals.next_due(c.profile)) is not None:
            times.append(d)
        return min(times) if times else None

    def run(self, watermark: int) -> None:
        heap = [(t, name) for name, c in self.customers.items() if (t := self.due(c)) is not None]
        heapq.heapify(heap)
        while heap and heap[0][0] < watermark:
            t = heap[0][0]
            names = set()
            while heap and heap[0][0] == t:
                names.add(heapq.heappop(heap)[1])
            for name in self._dependency_order(t, names):
                c = self.customers[name]
                if self.due(c) == t:
                    self._instant(name, c, t)
                if (nxt := self.due(c)) is not None:
                    heapq.heappush(heap, (nxt, name))

    def _dependency_order(self, t: int, names: set[str]) -> list[str]:
        """Profiles absorbed at ``t`` before those absorbing them (their state as of the merge is needed)."""
        order: list[str] = []
        done: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            done.add(name)
            c = self.customers[name]
            for pos, kind, payload in c.items[c.next :]:
                if pos.order_time != t:
                    break
                if kind == "absorb" and payload["old_id"] in names:
                    visit(payload["old_id"])
            order.append(name)

        for name in sorted(names):
            visit(name)
        return order

    def _instant(self, name: str, c: _Customer, t: int) -> None:
        if c.sessions is not None:
            swept = sweep(c.sessions, t, self.policy)
            c.sessions = swept.state
            self.versions.extend(swept.versions)
        chunk: list[CustomerEventRecord] = []
        while c.next < len(c.items) and c.items[c.next][0].order_time == t:
            pos, kind, payload = c.items[c.next]
            c.next += 1
            if kind == "event":
                if all(e["event_id"] != payload["event_id"] for e in chunk):
                    chunk.append(payload)
                continue
            self._events(name, c, t, chunk)
            chunk = []
            if kind == "absorbed":
                self.handed[(name, pos)] = (c.sessions, c.profile)
                c.sessions, c.profile, c.gone = None, None, True
            else:
                sessions, profile = self.handed.pop((payload["old_id"], pos))
                if sessions is not None and sessions.runs:
                    merged = merge_states(c.sessions, sessions, name, self.policy, t)
                    c.sessions = merged.state
                    self.versions.extend(merged.versions)
                if profile is not None:
                    c.profile = merge_profiles(c.profile, profile)
                    self.signals.on_instant(name, c.profile, t, [], self.out)
        self._events(name, c, t, chunk)

    def _events(self, name: str, c: _Customer, t: int, events: list[CustomerEventRecord]) -> None:
        if c.gone:
            return
        if events:
            known = c.sessions
            fresh = [e for e in events if known is None or not known.has_event(e["event_time"], e["event_id"])]
            update = add_events(c.sessions, name, fresh, t, self.policy)
            c.sessions = update.state
            self.versions.extend(update.versions)
            late = {e["event_id"] for e, _ in update.late}
            events = [e for e in fresh if e["event_id"] not in late]
        if events or c.profile is not None:
            c.profile = c.profile or JourneyProfile()
            self.signals.on_instant(name, c.profile, t, events, self.out)


@dataclass
class Replay:
    """Outputs of :func:`replay`: signals, transitions and profiles (encoded), session versions, final profiles."""

    out: SignalsOutput
    versions: list[SessionVersion]
    profiles: dict[str, JourneyProfile | None]


def replay(
    events_by_customer: Mapping[str, Iterable[CustomerEventRecord]], config: ReferenceConfig, codec: AvroCodec,
    watermark: int,
) -> Replay:  # fmt: skip
    """Definition 3 for customers whose events are given (each at its own event time; no identity controls)."""
    run = _Run(config, codec)
    for name, events in events_by_customer.items():
        run.customers[name].items = sorted(
            (Pos(e["event_time"], e["event_time"], RANK_EVENT, e["event_id"]), "event", e) for e in events
        )
    run.run(watermark)
    return Replay(run.out, run.versions, {name: c.profile for name, c in run.customers.items()})


def reference(events: Iterable[CustomerEventRecord], config: ReferenceConfig, codec: AvroCodec) -> Reference:
    """The warehouse rows for ``events`` (canonical events of one run; duplicates allowed)."""
    unique = unique_events(events)
    pos = order_positions(unique)
    result = Reference()
    run = _Run(config, codec)
    state = IdentityState()
    history: dict[str, list[tuple[Pos, str | None]]] = {}
    ordered = sorted(unique, key=lambda e: pos[e["event_id"]])
    route: dict[str, str] = {}
    for e in ordered:
        p = pos[e["event_id"]]
        link = link_candidates(e)
        if link is None:
            continue
        outcome = apply_link(state, link, config.identity, created=tuple(p))
        at = Pos(p.order_time, p.event_time, RANK_CONTROL, p.event_id)
        for node, profile in outcome.changes.items():
            history.setdefault(node, []).append((at, profile))
        for node in outcome.newly_shared:
            history.setdefault(node, []).append((at, None))
        for m in outcome.merges:
            result.merges[(m.old_id, m.new_id)] = {"old_id": m.old_id, "new_id": m.new_id, "rule": m.rule,
                                                   "event_id": m.event_id, "event_time": m.event_time,
                                                   "reason": m.reason}  # fmt: skip
            cpos = Pos(p.order_time, p.event_time, RANK_CONTROL, f"{p.event_id}/{m.old_id}")
            run.customers[m.old_id].items.append((cpos, "absorbed", {"new_id": m.new_id}))
            run.customers[m.new_id].items.append((cpos, "absorb", {"old_id": m.old_id}))
            for alias in [m.old_id, *outcome.aliases.get(m.old_id, [])]:
                result.final[alias] = m.new_id
        route[e["event_id"]] = outcome.survivor or resolve(state.assignments.get, state.shared, e)[0]
    for e in ordered:
        p = pos[e["event_id"]]
        name = route.get(e["event_id"]) or resolve_at(history.get, e, p)[0]
        run.customers[name].items.append((p, "event", e))
    for c in run.customers.values():
        c.items.sort(key=lambda item: item[0])
    result.watermark = max((p.order_time for p in pos.values()), default=NEVER) + 1
    run.run(result.watermark)
    _collect(run, result)
    return result


def _final(result: Reference, customer: str) -> str:
    seen = {customer}
    while customer in result.final and result.final[customer] not in seen:
        customer = result.final[customer]
        seen.add(customer)
    return customer


def _collect(run: _Run, result: Reference) -> None:
    for v in run.versions:
        known = result.sessions.get(v.session_id)
        if known is None or v.version > known["version"]:
            result.sessions[v.session_id] = v.to_record()
    for rows, pairs in ((result.transitions, run.out.transitions), (result.signals, run.out.signals)):
        for _key, value in pairs:
            record = dict(run.codec.decode(value).record)
            rows.setdefault(record.get("transition_id") or record["signal_id"], record)
    for _key, value in run.out.profiles:
        record = dict(run.codec.decode(value).record)
        known = result.profiles.get(record["customer_id"])
        if known is None or record["version"] > known["version"]:
            result.profiles[record["customer_id"]] = record
    for rows in (result.sessions, result.transitions, result.signals):
        for record in rows.values():
            record["customer_id"] = _final(result, record["customer_id"])
    result.profiles = {k: v for k, v in result.profiles.items() if k not in result.final}


def final_ids(merges: Mapping[tuple[str, str], Any]) -> dict[str, str]:
    """Absorbed id -> surviving id from merge records."""
    return {old: new for old, new in merges}
