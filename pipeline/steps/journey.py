"""Journey step: one state record per resolved customer, updated once per micro-batch.

Input items are canonical events keyed by profile id, and journey-control messages (``merge`` at the absorbed
profile's key, ``transfer`` carrying its state to the survivor's key). Guarantees per batch: each customer's
state is loaded once and returned once; session versions are emitted at most once per touched session;
events later than the session grace come back as typed failed events (``late_event``), never dropped; an
event that reaches a profile which was merged away is re-keyed to the survivor (followed across chains).
Not guaranteed: ordering of sessions across customers; exactly-once — replays re-emit versions, which
downstream upserts by (session_id, version) absorb.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline import __version__
from pipeline.domain.records import CustomerEventRecord, FailureType, Rejection, failed_event_record
from pipeline.domain.sessions import add_events, merge_states, sweep
from pipeline.domain.sessions_state import CustomerSessions
from pipeline.domain.sessions_summary import SessionPolicy, SessionVersion
from pipeline.metrics import JourneyMetrics
from pipeline.steps.bundles import expand
from pipeline.steps.journey_signals import JourneyProfile, JourneySignals, SignalsOutput, merge_profiles
from schemas.codec import AvroCodec

KeyValue = tuple[bytes | None, bytes]


@dataclass(frozen=True, slots=True)
class JourneyItem:
    """One consumed message of resolved-events, or one entry of a bundle (with the bundle's partition/offset)."""

    key: bytes
    value: bytes
    partition: int
    offset: int


@dataclass(slots=True)
class JourneyState:
    """The per-customer record: sessions, the journey profile (stage, triggers, churn statistics), and where to
    send things once the profile was merged away."""

    sessions: CustomerSessions | None = None
    redirect: str | None = None
    profile: JourneyProfile | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"v": 1, "r": self.redirect, "s": self.sessions.to_dict() if self.sessions else None}
        if self.profile is not None:
            doc["p"] = self.profile.to_list()
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> JourneyState:
        if not raw:
            return cls()
        doc = json.loads(raw)
        sessions = CustomerSessions.from_dict(doc["s"]) if doc.get("s") else None
        profile = JourneyProfile.from_list(doc["p"]) if doc.get("p") else None
        return cls(sessions, doc.get("r"), profile)


@dataclass(slots=True)
class JourneyOutput:
    """States to persist and messages to publish."""

    states: dict[bytes, bytes] = field(default_factory=dict)
    sessions: list[KeyValue] = field(default_factory=list)
    forwards: list[KeyValue] = field(default_factory=list)
    failed: list[KeyValue] = field(default_factory=list)
    journey: SignalsOutput = field(default_factory=SignalsOutput)
    churn_risk: int = 0  # sweep only: customers at churn risk among those swept
    state_bytes: int = 0  # sweep only: total encoded size of the states swept


class JourneyStep:
    """Sessionises each customer's events and applies identity merges to the journey state."""

    def __init__(
        self,
        codec: AvroCodec,
        policy: SessionPolicy,
        metrics: JourneyMetrics,
        seal: Callable[[bytes], str],
        source_topic: str,
        signals: JourneySignals | None = None,
    ) -> None:
        self._codec = codec
        self._policy = policy
        self._metrics = metrics
        self._seal = seal
        self._failed_key = source_topic.encode()
        self._signals = signals

    def process_batch(
        self, items: Sequence[JourneyItem], load: Callable[[bytes], bytes | None], now_ms: int
    ) -> JourneyOutput:
        out = JourneyOutput()
        groups: dict[bytes, list[JourneyItem]] = {}
        for item in items:
            for key, value in expand(self._codec, item.key, item.value):  # bundles: one item per entry
                entry = item if value is item.value else JourneyItem(key, value, item.partition, item.offset)
                groups.setdefault(entry.key, []).append(entry)
        for key, group in groups.items():
            state = JourneyState.decode(load(key))
            self._customer(key.decode(), state, group, now_ms, out)
            out.states[key] = state.encode()
        return out

    def sweep_state(self, key: bytes, raw: bytes, now_ms: int, out: JourneyOutput) -> int:
        """Timer path: close sessions of a silent customer, fire due triggers, re-score daily; returns the open
        sessions left."""
        state = JourneyState.decode(raw)
        changed = False
        out.state_bytes += len(raw)
        if state.profile is not None and self._signals is not None and state.redirect is None:
            before = state.profile.to_list()
            self._signals.on_timer(key.decode(), state.profile, now_ms, out.journey)
            changed = state.profile.to_list() != before
            out.churn_risk += state.profile.churn_risk
        if state.sessions is None or not state.sessions.runs:
            if changed:
                out.states[key] = state.encode()
            return 0
        update = sweep(state.sessions, now_ms, self._policy)
        if update.versions or update.state != state.sessions or changed:
            state.sessions = update.state
            out.states[key] = state.encode()
            self._emit(update.versions, out)
        return len(update.state.runs)

    def _customer(self, profile: str, state: JourneyState, group: list[JourneyItem], now_ms: int,
                  out: JourneyOutput) -> None:  # fmt: skip
        pending: list[CustomerEventRecord] = []
        sources: dict[str, JourneyItem] = {}

        def flush() -> None:
            if pending:
                self._metrics.events.inc(len(pending))
                update = add_events(state.sessions, profile, pending, now_ms, self._policy)
                state.sessions = update.state
                self._emit(update.versions, out)
                late = set()
                for event, reason in update.late:
                    self._late(sources[event["event_id"]], event, reason, now_ms, out)
                    late.add(event["event_id"])
                if self._signals is not None:  # late events are failed events: the journey ignores them too
                    state.profile = state.profile or JourneyProfile()
                    accepted = [e for e in pending if e["event_id"] not in late]
                    self._signals.on_events(profile, state.profile, accepted, now_ms, out.journey)
                pending.clear()

        for item in group:
            decoded = self._codec.decode(item.value)
            if decoded.subject == "customer-event":
                if state.redirect is not None:
                    out.forwards.append((state.redirect.encode(), item.value))
                    self._metrics.forwarded.inc()
                    continue
                record: Any = decoded.record
                pending.append(record)
                sources[record["event_id"]] = item
                continue
            flush()
            self._control(profile, state, decoded.record, item, out)
        flush()

    def _control(self, profile: str, state: JourneyState, control: dict[str, Any], item: JourneyItem,
                 out: JourneyOutput) -> None:  # fmt: skip
        if state.redirect is not None:  # merged away already: the survivor handles it
            out.forwards.append((state.redirect.encode(), item.value))
            return
        if control["kind"] == "merge" and control["new_id"] != profile:
            state.redirect = control["new_id"]
            has_sessions = state.sessions is not None and bool(state.sessions.runs)
            if has_sessions or state.profile is not None:
                # The journey profile rides along in the same JSON (the sessions reader ignores the extra key).
                doc: dict[str, Any] = state.sessions.to_dict() if has_sessions and state.sessions else {}
                if state.profile is not None:
                    doc["journey_profile"] = state.profile.to_list()
                transfer = {**control, "kind": "transfer", "state_json": json.dumps(doc)}
                out.forwards.append((state.redirect.encode(), self._codec.encode("journey-control", transfer)))
                self._metrics.transfers.inc()
            state.sessions = None
            state.profile = None
        elif control["kind"] == "transfer" and control["state_json"]:
            doc = json.loads(control["state_json"])
            if doc.get("journey_profile") is not None:
                state.profile = merge_profiles(state.profile, JourneyProfile.from_list(doc["journey_profile"]))
            if "format" in doc:
                absorbed = CustomerSessions.from_dict(doc)
                update = merge_states(state.sessions, absorbed, profile, self._policy)
                state.sessions = update.state
                self._emit(update.versions, out)

    def _emit(self, versions: Sequence[SessionVersion], out: JourneyOutput) -> None:
        for v in versions:
            out.sessions.append((v.session_id.encode(), self._codec.encode("session", v.to_record())))
            self._metrics.session_versions.get(v.status).inc()
            if v.status == "closed":
                self._metrics.session_duration.observe(v.duration_s)

    def _late(self, item: JourneyItem, event: CustomerEventRecord, reason: str, now_ms: int,
              out: JourneyOutput) -> None:  # fmt: skip
        rejection = Rejection(FailureType.LATE_EVENT, "beyond_session_grace", reason, event_id=event["event_id"])
        # The event's own input coordinates: entries of one bundle share a resolved-events offset, and the
        # warehouse keeps one failed row per (source topic, partition, offset).
        record = failed_event_record(rejection, event["source_topic"], event["source_partition"],
                                     event["source_offset"], item.key, item.value, f"journey/{__version__}", now_ms,
                                     seal=self._seal)  # fmt: skip
        out.failed.append((self._failed_key, self._codec.encode("failed-event", record)))
        self._metrics.late.inc()
