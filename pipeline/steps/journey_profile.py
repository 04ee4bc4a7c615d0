"""The journey part of a customer's state record: statistics, stage, triggers, churn flag, score, and the
signature of the last published profile; and how two profiles of one person are combined on a merge.

Guarantees: :func:`merge_profiles` is deterministic (a function of the two profiles); the survivor keeps its
stage, transition numbering and caps (its transitions were published under its id). Not guaranteed: exact
statistics where both profiles bought or were active on the same day (such days count twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.churn import CustomerStats
from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.stages import StageState
from pipeline.domain.triggers import TriggerState, merge_arms


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


def event_money(ev: CustomerEventRecord) -> int:
    """An event's value in minor units: amount, else the sum of its items, else quantity x unit price."""
    if ev["amount_minor"] is not None:
        return ev["amount_minor"]
    if ev["items"]:
        return sum(i["quantity"] * i["unit_price_minor"] for i in ev["items"])
    return (ev["quantity"] or 1) * (ev["unit_price_minor"] or 0)


def merge_profiles(survivor: JourneyProfile | None, absorbed: JourneyProfile) -> JourneyProfile:
    """The survivor's profile after an identity merge. Stage, triggers, versions stay the survivor's (its
    transitions were published under its id); purchase and activity statistics are combined. Approximate where
    both profiles bought or were active on the same day: such days count twice."""
    if survivor is None:
        absorbed.signature = ""  # published next under a new id
        absorbed.scored_day = -1
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
    t_s, t_a = survivor.trig, absorbed.trig
    if t_a.consent is not None and (t_s.consent_ms is None or (t_a.consent_ms or 0) > t_s.consent_ms):
        t_s.consent, t_s.consent_ms = t_a.consent, t_a.consent_ms  # the latest statement in event time wins
    merge_arms(t_s, t_a)
    if absorbed.trig.cart and (survivor.trig.cart_ms or 0) < (absorbed.trig.cart_ms or 0):
        t = absorbed.trig
        survivor.trig.cart, survivor.trig.cart_ids, survivor.trig.cart_ms = t.cart, t.cart_ids, t.cart_ms
        survivor.trig.cart_channel, survivor.trig.cart_flags = t.cart_channel, t.cart_flags
    survivor.scored_day = -1  # re-score at the merge
    return survivor
