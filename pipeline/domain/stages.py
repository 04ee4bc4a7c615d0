"""The journey stage machine: a versioned, declarative table of guarded transitions per resolved customer.

Stages: ``visitor -> engaged -> considering -> first_purchase -> repeat -> loyal -> advocate``, and the
retention loop ``at_risk -> lapsed -> won_back``. Every guard is one row of :data:`RULES` (sources, target,
guard, reason, minimum dwell); nothing else decides a stage. :func:`advance` applies the first matching row
repeatedly (a purchase can take a visitor straight to first_purchase through the table's own rows) and
returns every transition with its reason and evidence.

No flapping: stages only move forward except through the retention loop, whose entry follows the churn-risk
flag (itself a hysteresis band, see :mod:`pipeline.domain.churn`) and whose rows carry a minimum dwell in the
current stage. Changing any row means a new :data:`MACHINE_VERSION`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

MACHINE_VERSION = "stages/1"
DAY_MS = 86_400_000
LAPSE_DAYS = 60
STAGES = (
    "visitor",
    "engaged",
    "considering",
    "first_purchase",
    "repeat",
    "loyal",
    "advocate",
    "at_risk",
    "lapsed",
    "won_back",
)
_PRE_PURCHASE = ("visitor", "engaged", "considering")
_BUYERS = ("first_purchase", "repeat", "loyal", "advocate", "won_back")


@dataclass(frozen=True, slots=True)
class Facts:
    """What the guards may look at: a snapshot of the customer's statistics at one moment."""

    now_ms: int
    events: int
    active_days: int
    carted: bool
    purchase_days: int
    last_purchase_ms: int | None
    last_activity_ms: int | None
    churn_risk: bool
    positive_reviews: int


@dataclass(slots=True)
class StageState:
    """Current stage (None before the first event), when it was entered, and the transition counter."""

    stage: str | None = None
    since_ms: int = 0
    seq: int = 0

    def to_list(self) -> list[Any]:
        return [self.stage, self.since_ms, self.seq]

    @classmethod
    def from_list(cls, v: list[Any]) -> StageState:
        return cls(v[0], v[1], v[2])


class Rule(NamedTuple):
    sources: tuple[str | None, ...]
    target: str
    guard: Callable[[Facts, StageState], bool]
    reason: str
    min_dwell_ms: int = 0


def _bought_since_entering(f: Facts, s: StageState) -> bool:
    return f.last_purchase_ms is not None and f.last_purchase_ms > s.since_ms


def _silent(f: Facts, _s: StageState) -> bool:
    return f.last_activity_ms is not None and f.now_ms - f.last_activity_ms >= LAPSE_DAYS * DAY_MS


#: The whole machine. Order is priority: the first row whose source, guard and dwell match fires.
RULES: tuple[Rule, ...] = (
    Rule((None,), "visitor", lambda f, s: True, "first event seen for this customer"),
    Rule(_PRE_PURCHASE, "first_purchase", lambda f, s: f.purchase_days >= 1, "first purchase"),
    Rule(("visitor", "engaged"), "considering", lambda f, s: f.carted, "added products to the cart"),
    Rule(
        ("visitor",),
        "engaged",
        lambda f, s: f.active_days >= 2 or f.events >= 5,
        "came back on another day or interacted 5+ times",
    ),
    Rule(_BUYERS, "at_risk", lambda f, s: f.churn_risk, "churn risk turned on", DAY_MS),
    Rule(("at_risk", "lapsed"), "won_back", _bought_since_entering, "purchased again after being at risk"),
    Rule(("at_risk",), "lapsed", lambda f, s: f.churn_risk and _silent(f, s), f"no activity for {LAPSE_DAYS} days"),
    Rule(("first_purchase",), "repeat", lambda f, s: f.purchase_days >= 2, "purchased on a second day"),
    Rule(("won_back",), "repeat", _bought_since_entering, "purchased again after the win-back", 14 * DAY_MS),
    Rule(("repeat",), "loyal", lambda f, s: f.purchase_days >= 4, "purchased on 4+ days"),
    Rule(("loyal",), "advocate", lambda f, s: f.positive_reviews >= 1, "loyal customer posted a positive review"),
)


class Transition(NamedTuple):
    seq: int
    from_stage: str | None
    to_stage: str
    reason: str
    evidence: tuple[str, ...]
    event_time: int


def advance(state: StageState, facts: Facts, evidence: tuple[str, ...]) -> list[Transition]:
    """Fire matching rows until none matches (at most once per stage); ``state`` is updated in place."""
    out: list[Transition] = []
    for _ in range(len(STAGES)):
        rule = next(
            (
                r
                for r in RULES
                if state.stage in r.sources
                and facts.now_ms - state.since_ms >= r.min_dwell_ms
                and r.guard(facts, state)
            ),
            None,
        )
        if rule is None:
            break
        state.seq += 1
        out.append(Transition(state.seq, state.stage, rule.target, rule.reason, evidence, facts.now_ms))
        state.stage, state.since_ms = rule.target, facts.now_ms
    return out


def machine_table() -> list[tuple[str, str, str, str]]:
    """(from stages, to, reason, minimum dwell) rows for documentation and ``--help`` output."""
    return [
        (
            ", ".join(s or "(none)" for s in r.sources),
            r.target,
            r.reason,
            f"{r.min_dwell_ms // DAY_MS} d" if r.min_dwell_ms else "",
        )
        for r in RULES
    ]
