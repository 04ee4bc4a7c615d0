"""Per-customer purchase and activity statistics on a daily period, RFM segment, BTYD scoring, churn-risk band.

Everything is a pure function of the statistics, the day and the loaded parameters (no clock, no IO).

* Purchases are counted per UTC day: several purchases on one day are one purchase period, their money summed.
  A replayed event (same id among the recent ones) counts once. The BTYD summary is then
  ``x = purchase days - 1``, ``t_x = last - first day``, ``T = today - first day`` in the model's time unit,
  exactly what :func:`pipeline.models.transactions.summarise` computes offline, so the online P(alive) equals
  the closed form for the same history.
* Activity days (any event) feed the optional activity model; churn risk follows it when fitted.
* Churn risk has a hysteresis band: it turns on below ``enter`` and off only above ``exit`` (> enter), so a
  score wobbling around one threshold does not flap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pipeline.models.bgnbd import expected_purchases, p_alive
from pipeline.models.gammagamma import discounted_clv
from pipeline.models.params import ModelParams

DAY_MS = 86_400_000
_RECENT_DAYS = 6  # distinct recent days kept to merge out-of-order same-day purchases
_RECENT_IDS = 4  # purchase event ids kept to absorb replays
NEGATIVE_SENTIMENT = -0.5
NEGATIVE_RECENT_DAYS = 30


@dataclass(slots=True)
class CustomerStats:
    """Daily-period statistics of one customer (days are epoch days, money in minor units of ``currency``)."""

    first_buy: int | None = None
    last_buy: int | None = None
    buy_days: int = 0
    first_spend: int = 0
    repeat_spend: int = 0
    currency: str | None = None
    recent_buy: list[int] = field(default_factory=list)
    recent_ids: list[str] = field(default_factory=list)
    first_act: int | None = None
    last_act: int | None = None
    act_days: int = 0
    recent_act: list[int] = field(default_factory=list)
    last_negative_ms: int | None = None
    last_buy_ms: int | None = None

    def to_list(self) -> list[Any]:
        return [
            self.first_buy,
            self.last_buy,
            self.buy_days,
            self.first_spend,
            self.repeat_spend,
            self.currency,
            self.recent_buy,
            self.recent_ids,
            self.first_act,
            self.last_act,
            self.act_days,
            self.recent_act,
            self.last_negative_ms,
            self.last_buy_ms,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> CustomerStats:
        return cls(*v)

    @property
    def revenue(self) -> int:
        return self.first_spend + self.repeat_spend


def _add_day(days: list[int], day: int) -> bool:
    """Insert ``day`` into the recent-days list; False when it was already there."""
    if day in days:
        return False
    days.append(day)
    days.sort()
    del days[:-_RECENT_DAYS]
    return True


def add_activity(s: CustomerStats, t_ms: int) -> None:
    """Count the day of any event as an active day. A day older than the recent window (and not before the
    first day) is taken as already counted: out-of-order arrival that far back is beyond the session grace."""
    day = t_ms // DAY_MS
    if s.first_act is None or s.last_act is None:
        s.first_act = s.last_act = day
        s.act_days, s.recent_act = 1, [day]
        return
    if day < s.first_act:
        s.first_act = day
        s.act_days += 1
        _add_day(s.recent_act, day)
        return
    if day < s.recent_act[0]:
        return
    if _add_day(s.recent_act, day):
        s.act_days += 1
    s.last_act = max(s.last_act, day)


def add_purchase(s: CustomerStats, event_id: str, t_ms: int, amount_minor: int, currency: str | None) -> bool:
    """Account one purchase; False for a replay (same event id seen recently) or money in a second currency."""
    if event_id in s.recent_ids:
        return False
    if currency and s.currency and currency != s.currency:
        return False  # one currency per customer's money statistics; mixed money is not summed
    s.currency = s.currency or currency
    s.recent_ids = [*s.recent_ids, event_id][-_RECENT_IDS:]
    s.last_buy_ms = t_ms if s.last_buy_ms is None else max(s.last_buy_ms, t_ms)
    day = t_ms // DAY_MS
    if s.first_buy is None or s.last_buy is None:
        s.first_buy = s.last_buy = day
        s.buy_days, s.first_spend, s.recent_buy = 1, amount_minor, [day]
        return True
    if day == s.first_buy:
        s.first_spend += amount_minor
    elif day < s.first_buy:  # an earlier first day: the old first day becomes a repeat day
        s.repeat_spend += s.first_spend
        s.first_buy, s.first_spend = day, amount_minor
        s.buy_days += 1
        _add_day(s.recent_buy, day)
    else:
        s.repeat_spend += amount_minor
        # A day older than the recent window is taken as already counted (see add_activity).
        if day >= s.recent_buy[0] and _add_day(s.recent_buy, day):
            s.buy_days += 1
    s.last_buy = max(s.last_buy, day)
    return True


class Score(NamedTuple):
    """Model outputs for one customer on one day (None: not defined, e.g. no purchase or no parameters)."""

    p_alive: float | None
    p_active: float | None
    expected_90d: float | None
    clv_minor: float | None

    @property
    def churn_p(self) -> float | None:
        """The probability the churn band watches: activity-based when fitted, else purchase-based."""
        return self.p_active if self.p_active is not None else self.p_alive


def btyd_inputs(s: CustomerStats, today: int, unit_days: float) -> tuple[float, float, float] | None:
    """(x, t_x, T) of the purchase history as of ``today`` in model units, or None before the first purchase."""
    if s.first_buy is None or s.last_buy is None:
        return None
    return s.buy_days - 1.0, (s.last_buy - s.first_buy) / unit_days, (max(today, s.last_buy) - s.first_buy) / unit_days


def score(
    s: CustomerStats, today: int, params: ModelParams | None, horizon_days: float = 90.0, annual_discount: float = 0.1
) -> Score:
    """P(alive), P(active), expected purchases in ``horizon_days`` and discounted CLV over that horizon."""
    if params is None:
        return Score(None, None, None, None)
    unit = params.unit_days
    p_act = None
    if params.activity is not None and s.first_act is not None and s.last_act is not None:
        x = s.act_days - 1.0
        p_act = p_alive(
            params.activity,
            x,
            (s.last_act - s.first_act) / unit,
            (max(today, s.last_act) - s.first_act) / unit,
            params.variant,
        )
    inputs = btyd_inputs(s, today, unit)
    if inputs is None:
        return Score(None, p_act, None, None)
    x, t_x, big_t = inputs
    alive = p_alive(params.bg, x, t_x, big_t, params.variant)
    horizon = horizon_days / unit
    expected = expected_purchases(params.bg, horizon, x, t_x, big_t, params.variant)
    clv = None
    if params.gg is not None and params.gg.q > 1:
        # Spend models are fitted on major units (the files' amounts); the stream keeps minor units (cents).
        mean_repeat = s.repeat_spend / x / 100 if x > 0 else 0.0
        step = 30.0 / unit  # monthly steps, discount compounded monthly
        rate = (1 + annual_discount) ** (1 / 12) - 1
        clv = 100 * discounted_clv(
            params.bg, params.gg, x, t_x, big_t, mean_repeat, params.variant, horizon, step, rate
        )
    # A degenerate fit (too little history) can overflow: publish "no score", never NaN or infinity.
    return Score(_finite(alive), _finite(p_act), _finite(expected), _finite(clv))


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def rfm_segment(s: CustomerStats, today: int) -> str:
    """A coarse RFM segment from recency (days), frequency (purchase days) and money; rules in one table."""
    if s.last_buy is None:
        return "prospect"
    recency = today - s.last_buy
    for name, max_recency, min_days in _RFM_RULES:
        if recency <= max_recency and s.buy_days >= min_days:
            return name
    return "lost"


#: (segment, recency at most, purchase days at least): the first matching row wins.
_RFM_RULES: tuple[tuple[str, int, int], ...] = (
    ("champion", 30, 4),
    ("loyal", 90, 3),
    ("new", 30, 1),
    ("promising", 90, 1),
    ("at_risk", 180, 2),
    ("hibernating", 365, 1),
)


@dataclass(frozen=True)
class ChurnPolicy:
    """The hysteresis band on the churn probability: on below ``enter``, off above ``exit``."""

    enter: float = 0.3
    exit: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.enter < self.exit < 1:
            raise ValueError(f"churn band needs 0 < enter < exit < 1, got {self.enter}, {self.exit}")


def churn_band(on: bool, sc: Score, policy: ChurnPolicy) -> bool:
    """The new churn-risk flag: unchanged inside the band, so a score near one threshold cannot flap."""
    p = sc.churn_p
    if p is None:
        return on
    if not on and p < policy.enter:
        return True
    if on and p > policy.exit:
        return False
    return on


def churn_reasons(s: CustomerStats, sc: Score, today: int, now_ms: int) -> tuple[str, dict[str, str]]:
    """Why the customer is at risk, in words and as details (numbers as strings, for the signal's map)."""
    parts: list[str] = []
    details: dict[str, str] = {}
    if sc.churn_p is not None:
        kind = "P(active)" if sc.p_active is not None else "P(alive)"
        parts.append(f"{kind} {sc.churn_p:.2f}")
        details["churn_p"] = f"{sc.churn_p:.4f}"
    if sc.p_alive is not None:
        details["p_alive"] = f"{sc.p_alive:.4f}"
    if s.last_buy is not None and s.first_buy is not None:
        since = today - s.last_buy
        details["days_since_purchase"] = str(since)
        if s.buy_days > 1:
            gap = (s.last_buy - s.first_buy) / (s.buy_days - 1)
            details["usual_gap_days"] = f"{gap:.1f}"
            parts.append(f"{since} days since last purchase vs usual gap {gap:.0f}")
        else:
            parts.append(f"{since} days since the only purchase")
    if s.last_act is not None:
        details["days_since_activity"] = str(today - s.last_act)
        parts.append(f"{today - s.last_act} days without activity")
    if s.last_negative_ms is not None and now_ms - s.last_negative_ms <= NEGATIVE_RECENT_DAYS * DAY_MS:
        parts.append("recent negative sentiment")
        details["recent_negative_sentiment"] = "true"
    recent = [d for d in s.recent_act if today - d < 30]
    earlier = [d for d in s.recent_act if 30 <= today - d < 60]
    if len(recent) < len(earlier):
        parts.append(f"engagement falling ({len(recent)} active days in 30 vs {len(earlier)} before)")
        details["engagement_trend"] = f"{len(recent)}/{len(earlier)}"
    return "; ".join(parts) or "churn probability below threshold", details
