"""Journey profile beside the sessions in the one per-customer state record: stage machine, triggers and churn.

:class:`JourneySignals` runs the pure domain functions (:mod:`pipeline.domain.churn`, ``stages``, ``triggers``)
for one customer's micro-batch of events (event-time order) or for the timer sweep, and returns the encoded
outputs: stage transitions (journey-stages), governed signals (signals) and, when something a marketer sees
changed, a new customer-profile version. Guarantees: deterministic ids (transition = customer + seq + machine
version; signal = customer + type + time + evidence), profile versions strictly increasing per customer.
Not guaranteed: exactly-once; a replayed batch after a crash can emit a transition or signal again with the
same id, which consumers upsert by id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain import churn, stages, triggers
from pipeline.domain.churn import ChurnPolicy, CustomerStats, Score
from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.stages import StageState, Transition
from pipeline.domain.triggers import Candidate, TriggerPolicy, TriggerState
from pipeline.metrics_journey import JourneySignalMetrics
from pipeline.models.params import ModelParams
from schemas.codec import AvroCodec

DAY_MS = churn.DAY_MS
HIGH_VALUE_DAYS = 3  # purchase days that make a customer "high value" for win-back
KeyValue = tuple[bytes | None, bytes]


@dataclass(slots=True)
class JourneyProfile:
    """The journey part of the customer's state record (compact lists in JSON)."""

    stats: CustomerStats = field(default_factory=CustomerStats)
    stage: StageState = field(default_factory=StageState)
    trig: TriggerState = field(default_factory=TriggerState)
    churn_risk: bool = False
    scored_day: int = -1
    score: list[float | None] = field(default_factory=lambda: [None, None, None, None])
    events: int = 0
    positive_reviews: int = 0
    carted: bool = False
    known: bool = False
    channels: list[str] = field(default_factory=list)
    last_event_id: str | None = None
    version: int = 0
    signature: str = ""

    def to_list(self) -> list[Any]:
        return [
            self.stats.to_list(),
            self.stage.to_list(),
            self.trig.to_list(),
            self.churn_risk,
            self.scored_day,
            self.score,
            self.events,
            self.positive_reviews,
            self.carted,
            self.known,
            self.channels,
            self.last_event_id,
            self.version,
            self.signature,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> JourneyProfile:
        return cls(CustomerStats.from_list(v[0]), StageState.from_list(v[1]), TriggerState.from_list(v[2]), *v[3:])


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


def event_money(ev: CustomerEventRecord) -> int:
    """An event's value in minor units: amount, else the sum of its items, else quantity x unit price."""
    if ev["amount_minor"] is not None:
        return ev["amount_minor"]
    if ev["items"]:
        return sum(i["quantity"] * i["unit_price_minor"] for i in ev["items"])
    return (ev["quantity"] or 1) * (ev["unit_price_minor"] or 0)


class JourneySignals:
    """Stage machine, triggers and churn for one customer at a time (see the module docstring)."""

    def __init__(self, config: SignalsConfig, codec: AvroCodec, metrics: JourneySignalMetrics) -> None:
        self._cfg = config
        self._codec = codec
        self._m = metrics

    def on_events(
        self, customer: str, prof: JourneyProfile, events: list[CustomerEventRecord], now_ms: int, out: SignalsOutput
    ) -> None:
        """Feed one customer's events (any order; applied in event-time order)."""
        cands: list[Candidate] = []
        moves: list[Transition] = []
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
            bought = ev["event_type"] in triggers.PURCHASES and churn.add_purchase(
                s, ev["event_id"], t, event_money(ev), ev["currency"]
            )
            sentiment = ev["sentiment"]
            if sentiment is not None and sentiment <= churn.NEGATIVE_SENTIMENT:
                s.last_negative_ms = t
            if ev["event_type"] == "review" and ((ev["rating"] or 0) >= 4 or (sentiment or 0) >= 0.5):
                prof.positive_reviews += 1
            cands += triggers.on_event(prof.trig, ev, prof.known, self._cfg.triggers)
            if bought or t // DAY_MS > prof.scored_day:
                cands += self._rescore(customer, prof, t)
            moves += stages.advance(prof.stage, self._facts(prof, t), (ev["event_id"],))
        self._finish(customer, prof, cands, moves, now_ms, prof.trig.last_ms or now_ms, out)

    def on_timer(self, customer: str, prof: JourneyProfile, now_ms: int, out: SignalsOutput) -> None:
        """Timer sweep at processing time ``now_ms``: due triggers, the daily re-score, stage guards."""
        cands = triggers.timers(prof.trig, now_ms, self._cfg.triggers)
        if now_ms // DAY_MS > prof.scored_day:
            cands += self._rescore(customer, prof, now_ms)
        evidence = (prof.last_event_id,) if prof.last_event_id else ()
        moves = stages.advance(prof.stage, self._facts(prof, now_ms), evidence) if prof.stage.stage else []
        self._finish(customer, prof, cands, moves, now_ms, now_ms, out)

    # --- internals -----------------------------------------------------------------------------------------

    def _rescore(self, customer: str, prof: JourneyProfile, t: int) -> list[Candidate]:
        today = t // DAY_MS
        prof.scored_day = max(prof.scored_day, today)
        sc = churn.score(prof.stats, today, self._cfg.params)
        prof.score = list(sc)
        was = prof.churn_risk
        prof.churn_risk = churn.churn_band(was, sc, self._cfg.churn)
        if was or not prof.churn_risk:
            return []
        reason, details = churn.churn_reasons(prof.stats, sc, today, t)
        evidence = tuple(prof.stats.recent_ids[-1:]) or ((prof.last_event_id,) if prof.last_event_id else ())
        out = [Candidate("churn_risk", t, reason, evidence, score=sc.churn_p, details=tuple(sorted(details.items())))]
        if prof.stats.buy_days >= HIGH_VALUE_DAYS:
            clv = f", CLV {sc.clv_minor / 100:.2f}" if sc.clv_minor is not None else ""
            out.append(
                Candidate(
                    "win_back",
                    t,
                    f"high-value customer ({prof.stats.buy_days} purchase days{clv}) turned at-risk: {reason}",
                    evidence,
                    score=sc.clv_minor,
                    details=tuple(sorted(details.items())),
                )
            )
        return out

    def _facts(self, prof: JourneyProfile, now_ms: int) -> stages.Facts:
        s = prof.stats
        return stages.Facts(
            now_ms=now_ms,
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
        self,
        customer: str,
        prof: JourneyProfile,
        cands: list[Candidate],
        moves: list[Transition],
        now_ms: int,
        changed_at: int,
        out: SignalsOutput,
    ) -> None:
        key = customer.encode()
        for mv in moves:
            out.transitions.append((key, self._codec.encode("journey-stage", self._transition(customer, mv))))
            self._m.transitions.get(mv.from_stage or "none", mv.to_stage).inc()
        governed = triggers.govern(prof.trig, customer, cands, now_ms, self._cfg.triggers)
        for sig in governed.signals:
            out.signals.append((key, self._codec.encode("signal", sig.to_record())))
            self._m.signals.get(sig.candidate.signal_type, str(sig.holdout).lower()).inc()
        for cand, why in governed.suppressed:
            self._m.suppressed.get(cand.signal_type, why).inc()
        record = self._profile(customer, prof, changed_at)
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

    def _profile(self, customer: str, prof: JourneyProfile, changed_at: int) -> dict[str, Any] | None:
        """The next profile version, or None when nothing a marketer sees changed (P(alive) in steps of 0.05)."""
        s = prof.stats
        sc = Score(*prof.score)
        today = prof.scored_day
        segment = churn.rfm_segment(s, today)
        coarse = None if sc.p_alive is None else round(sc.p_alive * 20)
        sig = repr(
            (
                prof.stage.stage,
                segment,
                s.buy_days,
                s.revenue,
                prof.churn_risk,
                prof.trig.consent,
                prof.channels,
                coarse,
            )
        )
        if sig == prof.signature:
            return None
        prof.signature = sig
        prof.version += 1
        return {
            "customer_id": customer,
            "version": prof.version,
            "updated_at": changed_at,
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
            "expected_purchases_90d": sc.expected_90d,
            "clv_minor": sc.clv_minor,
            "model_version": self._cfg.params.version if self._cfg.params else None,
            "churn_risk": prof.churn_risk,
        }


def merge_profiles(survivor: JourneyProfile | None, absorbed: JourneyProfile) -> JourneyProfile:
    """The survivor's profile after an identity merge. Stage, triggers, versions stay the survivor's (its
    transitions were published under its id); purchase and activity statistics are combined. Approximate where
    both profiles bought or were active on the same day: such days count twice."""
    if survivor is None:
        absorbed.version += 1  # published next under a new id: keep versions moving forward anyway
        absorbed.signature = ""
        return absorbed
    a, b = survivor.stats, absorbed.stats
    if b.first_buy is not None:
        if a.first_buy is None:
            a.first_buy, a.last_buy, a.first_spend = b.first_buy, b.last_buy, b.first_spend
            a.buy_days, a.repeat_spend, a.currency, a.last_buy_ms = (
                b.buy_days,
                b.repeat_spend,
                b.currency,
                b.last_buy_ms,
            )
        elif a.currency == b.currency or b.currency is None:
            early, late = (a, b) if a.first_buy <= b.first_buy else (b, a)
            a.repeat_spend = a.repeat_spend + b.repeat_spend + late.first_spend
            a.first_buy, a.first_spend = early.first_buy, early.first_spend
            a.last_buy = max(a.last_buy or 0, b.last_buy or 0)
            a.last_buy_ms = max(a.last_buy_ms or 0, b.last_buy_ms or 0) or None
            a.buy_days += b.buy_days
        a.recent_buy = sorted(set(a.recent_buy + b.recent_buy))[-6:]
        a.recent_ids = (a.recent_ids + b.recent_ids)[-4:]
    if b.first_act is not None and b.last_act is not None:
        a.first_act = b.first_act if a.first_act is None else min(a.first_act, b.first_act)
        a.last_act = b.last_act if a.last_act is None else max(a.last_act, b.last_act)
        a.act_days += b.act_days
        a.recent_act = sorted(set(a.recent_act + b.recent_act))[-6:]
    survivor.events += absorbed.events
    survivor.positive_reviews += absorbed.positive_reviews
    survivor.carted = survivor.carted or absorbed.carted
    survivor.known = survivor.known or absorbed.known
    survivor.channels = sorted(set(survivor.channels) | set(absorbed.channels))
    if survivor.trig.consent is None:
        survivor.trig.consent = absorbed.trig.consent
    if absorbed.trig.cart and (survivor.trig.cart_ms or 0) < (absorbed.trig.cart_ms or 0):
        t = absorbed.trig
        survivor.trig.cart, survivor.trig.cart_ids, survivor.trig.cart_ms = t.cart, t.cart_ids, t.cart_ms
        survivor.trig.cart_channel, survivor.trig.cart_flags = t.cart_channel, t.cart_flags
    survivor.scored_day = -1  # re-score on the next event or sweep
    return survivor
