"""Stage machine, triggers and churn for one customer, one event-time instant at a time.

:class:`JourneySignals` runs the pure domain functions (:mod:`pipeline.domain.churn`, ``stages``, ``triggers``)
for the items of one customer that share an order time (see :mod:`pipeline.domain.eventtime`): first what is due
at that instant (trigger timers, the daily re-score, time-based stage rules), then the events in
``(event_time, event_id)`` order. It returns encoded outputs: stage transitions (journey-stages), governed
signals (signals) and, when something a marketer sees changed, a new customer-profile version.

Guarantees: the same instants in the same order give the same outputs, whatever the batching (ids and versions
are functions of the customer's history: transition = customer + seq + machine version; signal = type + event
time + evidence; profile version from the instant, :func:`~pipeline.domain.eventtime.version_at`). Scores are
computed as of the instant's UTC day, for every scored customer once per day. Not guaranteed: exactly-once; a
replayed batch can emit a transition, signal or profile version again with the same id, which consumers upsert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.clock import Clock, SystemClock
from pipeline.domain import churn, stages, triggers
from pipeline.domain.churn import ChurnPolicy, Score
from pipeline.domain.eventtime import version_at
from pipeline.domain.orders import order_lines
from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.stages import Transition
from pipeline.domain.triggers import Candidate, TriggerPolicy
from pipeline.metrics_journey import JourneySignalMetrics
from pipeline.models.params import ModelParams
from pipeline.steps.journey_profile import JourneyProfile, event_money
from schemas.codec import AvroCodec

DAY_MS = churn.DAY_MS
HIGH_VALUE_DAYS = 3  # purchase days that make a customer "high value" for win-back
KeyValue = tuple[bytes | None, bytes]


@dataclass(frozen=True)
class SignalsConfig:
    triggers: TriggerPolicy = field(default_factory=TriggerPolicy)
    churn: ChurnPolicy = field(default_factory=ChurnPolicy)
    params: ModelParams | None = None


@dataclass(slots=True)
class SignalsOutput:
    transitions: list[KeyValue] = field(default_factory=list)
    signals: list[KeyValue] = field(default_factory=list)
    profiles: list[KeyValue] = field(default_factory=list)
    order_lines: list[KeyValue] = field(default_factory=list)


class JourneySignals:
    """Stage machine, triggers and churn for one customer at a time (see the module docstring)."""

    def __init__(
        self, config: SignalsConfig, codec: AvroCodec, metrics: JourneySignalMetrics, clock: Clock | None = None
    ) -> None:
        self._cfg = config
        self._codec = codec
        self._m = metrics
        self._clock = clock or SystemClock()  # processing time: only for signals' emitted_at

    def next_due(self, prof: JourneyProfile) -> int | None:
        """The next instant at which :meth:`on_instant` has something to do without an event: a trigger timer,
        or the next UTC midnight for a customer the models score (daily re-score, time-based stage rules)."""
        due = triggers.next_due(prof.trig, self._cfg.triggers)
        if prof.scored_day >= 0 and self.scored(prof):
            midnight = (prof.scored_day + 1) * DAY_MS
            due = midnight if due is None else min(due, midnight)
        return due

    def scored(self, prof: JourneyProfile) -> bool:
        """Whether the models give this customer a score (fitted parameters and a purchase or activity history)."""
        params = self._cfg.params
        if params is None:
            return False
        return prof.stats.first_buy is not None or (params.activity is not None and prof.stats.first_act is not None)

    def on_instant(
        self, customer: str, prof: JourneyProfile, clock: int, events: Sequence[CustomerEventRecord], out: SignalsOutput
    ) -> None:
        """Apply event-time instant ``clock``: what is due at it, then ``events`` (any order; applied in
        ``(event_time, event_id)`` order; an event delivered late keeps its own time for its data)."""
        cands = triggers.timers(prof.trig, clock, self._cfg.triggers)
        moves: list[Transition] = []
        if not events:  # a timer instant: the daily re-score, then the time-based stage rules
            if clock // DAY_MS > prof.scored_day and self.scored(prof):
                cands += self._rescore(customer, prof, clock)
            if prof.stage.stage:
                evidence = (prof.last_event_id,) if prof.last_event_id else ()
                moves += stages.advance(prof.stage, self._facts(prof, clock), evidence)
        for ev in sorted(events, key=lambda e: (e["event_time"], e["event_id"])):
            t = ev["event_time"]
            s = prof.stats
            prof.events += 1
            prof.last_event_id = ev["event_id"]
            if ev["channel"] not in prof.channels:
                prof.channels = sorted([*prof.channels, ev["channel"]])
            prof.known = prof.known or any(ev[k] for k in ("customer_id", "email_hash", "loyalty_id", "phone_hash"))
            prof.carted = prof.carted or ev["event_type"] == "add_to_cart"
            churn.add_activity(s, t)
            money = event_money(ev) if ev["event_type"] in triggers.PURCHASES else 0
            bought = ev["event_type"] in triggers.PURCHASES and churn.add_purchase(
                s, ev["event_id"], t, money, ev["currency"]
            )
            if bought:  # the first time this purchase is applied: its lines (a replay repeats the same line ids)
                for line in order_lines(ev, customer, money):
                    out.order_lines.append((customer.encode(), self._codec.encode("order-line", line)))
            sentiment = ev["sentiment"]
            if sentiment is not None and sentiment <= churn.NEGATIVE_SENTIMENT:
                s.last_negative_ms = t if s.last_negative_ms is None else max(s.last_negative_ms, t)
            if ev["event_type"] == "review" and ((ev["rating"] or 0) >= 4 or (sentiment or 0) >= 0.5):
                prof.positive_reviews += 1
            cands += triggers.on_event(prof.trig, ev, prof.known, self._cfg.triggers)
            if bought or clock // DAY_MS > prof.scored_day:
                cands += self._rescore(customer, prof, clock)
            moves += stages.advance(prof.stage, self._facts(prof, clock), (ev["event_id"],))
        self._finish(customer, prof, cands, moves, clock, out)

    # --- internals -----------------------------------------------------------------------------------------

    def _rescore(self, customer: str, prof: JourneyProfile, clock: int) -> list[Candidate]:
        today = clock // DAY_MS
        prof.scored_day = max(prof.scored_day, today)
        sc = churn.score(prof.stats, today, self._cfg.params)
        prof.score = list(sc)
        was = prof.churn_risk
        prof.churn_risk = churn.churn_band(was, sc, self._cfg.churn)
        if was or not prof.churn_risk:
            return []
        reason, details = churn.churn_reasons(prof.stats, sc, today, clock)
        evidence = tuple(prof.stats.recent_ids[-1:]) or ((prof.last_event_id,) if prof.last_event_id else ())
        out = [
            Candidate("churn_risk", clock, reason, evidence, score=sc.churn_p, details=tuple(sorted(details.items())))
        ]
        if prof.stats.buy_days >= HIGH_VALUE_DAYS:
            clv = f", CLV {sc.clv_minor / 100:.2f}" if sc.clv_minor is not None else ""
            why = f"high-value customer ({prof.stats.buy_days} purchase days{clv}) turned at-risk: {reason}"
            out.append(Candidate("win_back", clock, why, evidence, score=sc.clv_minor,
                                 details=tuple(sorted(details.items()))))  # fmt: skip
        return out

    def _facts(self, prof: JourneyProfile, clock: int) -> stages.Facts:
        s = prof.stats
        return stages.Facts(
            now_ms=clock,
            events=prof.events,
            active_days=s.act_days,
            carted=prof.carted,
            purchase_days=s.buy_days,
            last_purchase_ms=s.last_buy_ms,
            last_activity_ms=None if s.last_act is None else s.last_act * DAY_MS,
            churn_risk=prof.churn_risk,
            positive_reviews=prof.positive_reviews,
        )

    def _finish(
        self, customer: str, prof: JourneyProfile, cands: list[Candidate], moves: list[Transition], clock: int,
        out: SignalsOutput,
    ) -> None:  # fmt: skip
        key = customer.encode()
        for mv in moves:
            out.transitions.append((key, self._codec.encode("journey-stage", self._transition(customer, mv))))
            self._m.transitions.get(mv.from_stage or "none", mv.to_stage).inc()
        governed = triggers.govern(prof.trig, customer, cands, self._clock.now_ms(), self._cfg.triggers)
        for sig in governed.signals:
            out.signals.append((key, self._codec.encode("signal", sig.to_record())))
            self._m.signals.get(sig.candidate.signal_type, str(sig.holdout).lower()).inc()
        for cand, why in governed.suppressed:
            self._m.suppressed.get(cand.signal_type, why).inc()
        record = self.profile_record(customer, prof, clock)
        if record is not None:
            out.profiles.append((key, self._codec.encode("customer-profile", record)))
            self._m.profiles.inc()

    def _transition(self, customer: str, mv: Transition) -> dict[str, Any]:
        tid = hashlib.sha256(f"{customer}\x1f{mv.seq}\x1f{stages.MACHINE_VERSION}".encode()).hexdigest()[:24]
        return {
            "transition_id": "st-" + tid,
            "customer_id": customer,
            "seq": mv.seq,
            "from_stage": mv.from_stage,
            "to_stage": mv.to_stage,
            "reason": mv.reason,
            "evidence_event_ids": list(mv.evidence),
            "event_time": mv.event_time,
            "machine_version": stages.MACHINE_VERSION,
        }

    def profile_record(
        self, customer: str, prof: JourneyProfile, clock: int, force: bool = False
    ) -> dict[str, Any] | None:
        """The next profile version, or None when nothing a marketer sees changed (``force``: publish anyway,
        e.g. under a new id after a merge). Scores change every day, so a scored customer gets one a day."""
        s = prof.stats
        sc = Score(*prof.score)
        today = prof.scored_day
        segment = churn.rfm_segment(s, today)
        sig = repr((prof.stage.stage, segment, s.buy_days, s.revenue, prof.churn_risk, prof.trig.consent,
                    prof.channels, today if sc != Score(None, None, None, None) else None))  # fmt: skip
        if sig == prof.signature and not force:
            return None
        prof.signature = sig
        prof.version = version_at(clock, prof.version)
        return {
            "customer_id": customer,
            "version": prof.version,
            "updated_at": clock,
            "stage": prof.stage.stage,
            "rfm_segment": segment,
            "channels": list(prof.channels),
            "marketing_consent": prof.trig.consent is True,
            "first_purchase_day": s.first_buy,
            "last_purchase_day": s.last_buy,
            "purchase_days": s.buy_days,
            "revenue_minor": s.revenue,
            "currency": s.currency,
            "p_alive": sc.p_alive,
            "p_active": sc.p_active,
            "expected_purchases_90d": sc.expected_90d,
            "clv_minor": sc.clv_minor,
            "score_as_of": today if today >= 0 else None,
            "model_version": self._cfg.params.version if self._cfg.params else None,
            "churn_risk": prof.churn_risk,
        }
