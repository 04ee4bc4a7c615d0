"""Session rules shared by the streaming sessioniser and the batch reference: policy, gap rule, bot cap, summary.

Everything that decides *what a session is* lives here, so :mod:`pipeline.domain.sessions` (incremental) and
:mod:`pipeline.domain.sessions_batch` (reference) cannot drift apart:

* **Gap rule** (:func:`linked`): two events of one customer are linked when their event times are at most
  ``gap_ms`` apart, or at most ``store_gap_ms`` apart when *either of the two* is a store-channel event
  (``channel == "store"``). A session is a connected group of linked events. Such groups are contiguous in
  event time, so for consecutive events this reads "the gap may be ``store_gap_ms`` when the event before or
  after it is a store event", with one addition: a store event also links directly to non-adjacent events
  within ``store_gap_ms`` (web 10:00, web 10:40, store 11:20 is one session). That makes the rule monotone:
  more events can merge sessions but never split one, which is what lets out-of-order arrival converge.
* **Bot cap** (:func:`piece_starts`): a session whose span exceeds ``max_duration_ms`` is cut greedily from its
  first event: a piece holds the events at most ``max_duration_ms`` after the piece's first event, the next
  piece starts at the next event. Every piece of a cut session is flagged ``bot_suspect``. Depends only on
  event times, so batch and stream agree.
* **Summary** (:func:`summary_values`): a pure function of the session's events sorted by
  ``(event_time, event_id)``; floats are summed with ``math.fsum``, so the result does not depend on arrival.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline.domain.records import CustomerEventRecord

STORE = "store"
OPEN, CLOSED, MERGED = "open", "closed", "merged"  # SessionVersion.status
_MINUTE = 60_000
_CART_SIGN = {"add_to_cart": 1, "remove_from_cart": -1}
_REVENUE_SIGN = {"purchase": 1, "pos_purchase": 1, "return": -1}
_BOUGHT = frozenset({"purchase", "pos_purchase"})


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Session timing, all in milliseconds. ``grace_ms`` is the allowed lateness: how far behind the
    customer's event-time clock an event may still be placed into its session.

    Constraints (checked): ``0 < gap_ms <= store_gap_ms <= max_duration_ms``, ``grace_ms >= 0``.
    ``max_duration_ms >= store_gap_ms`` keeps "final" a prefix property (a session can only become final after
    every earlier one has), which the state pruning relies on.
    """

    gap_ms: int = 30 * _MINUTE
    store_gap_ms: int = 90 * _MINUTE
    grace_ms: int = 120 * _MINUTE
    max_duration_ms: int = 12 * 60 * _MINUTE

    def __post_init__(self) -> None:
        if not 0 < self.gap_ms <= self.store_gap_ms <= self.max_duration_ms or self.grace_ms < 0:
            raise ValueError(f"invalid session policy: {self}")

    @property
    def reach_ms(self) -> int:
        """The longest distance over which any two events can link (the store gap)."""
        return self.store_gap_ms


class Fact(NamedTuple):
    """The compact part of an event a session summary needs. Sorts by ``(t, event_id)``: ids are unique.

    ``money`` is signed minor units: + for add_to_cart/purchase/pos_purchase, - for remove_from_cart/return,
    0 otherwise. ``products`` holds the ids that feed viewed/carted/bought, empty for other types.
    """

    t: int
    event_id: str
    channel: str
    event_type: str
    products: tuple[str, ...]
    money: int
    currency: str | None
    store_id: str | None
    sentiment: float | None
    campaign: str | None


def fact_of(event: CustomerEventRecord) -> Fact:
    """Extract the :class:`Fact` of a canonical event. Campaign is ``campaign_id``, else ``utm_campaign``."""
    etype = event["event_type"]
    pid = event["product_id"]
    items = event["items"]
    products: tuple[str, ...] = ()
    money = 0
    if etype == "product_view":
        products = (pid,) if pid else ()
    elif etype in _CART_SIGN:
        if items:
            value = sum(i["quantity"] * i["unit_price_minor"] for i in items)
        else:
            value = (event["quantity"] or 1) * (event["unit_price_minor"] or 0)
        money = _CART_SIGN[etype] * value
        if etype == "add_to_cart":
            products = tuple(i["product_id"] for i in items) if items else ((pid,) if pid else ())
    elif etype in _REVENUE_SIGN:
        amount = event["amount_minor"]
        if amount is None:
            amount = sum(i["quantity"] * i["unit_price_minor"] for i in items)
        money = _REVENUE_SIGN[etype] * amount
        if etype in _BOUGHT:
            products = tuple(i["product_id"] for i in items) + ((pid,) if pid else ())
    currency = event["currency"] if etype in _CART_SIGN or etype in _REVENUE_SIGN else None
    return Fact(
        event["event_time"], event["event_id"], event["channel"], etype, products, money, currency,
        event["store_id"], event["sentiment"], event["campaign_id"] or event["utm_campaign"],
    )  # fmt: skip


def reach(channel: str, policy: SessionPolicy) -> int:
    """How far (ms, either direction) an event of ``channel`` links on its own."""
    return policy.store_gap_ms if channel == STORE else policy.gap_ms


def linked(t_a: int, channel_a: str, t_b: int, channel_b: str, policy: SessionPolicy) -> bool:
    """THE gap rule: ``|t_b - t_a| <= store_gap`` if either event is a store event, else ``<= gap``.

    Inclusive: events exactly ``gap_ms`` apart are in one session.
    """
    return abs(t_b - t_a) <= max(reach(channel_a, policy), reach(channel_b, policy))


def piece_starts(times: Sequence[int], max_duration_ms: int) -> list[int]:
    """Indices where the bot cap starts a new piece of one session (``times`` sorted). Always starts with 0."""
    starts = [0]
    limit = times[0] + max_duration_ms
    for i, t in enumerate(times):
        if t > limit:
            starts.append(i)
            limit = t + max_duration_ms
    return starts


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSummary:
    """What a session is, independent of how it was computed (stream or batch) or which version it is.

    ``cart_value_minor`` = max(0, added - removed) and ``revenue_minor`` = purchases + pos_purchases - returns
    (may be negative), both counted only in ``currency``: the first currency of a revenue event, else of a cart
    event. Money in another currency in the same session is left out (one market per customer is assumed).
    """

    customer_id: str
    start_ms: int
    end_ms: int
    duration_s: int
    channel_path: str
    channels: tuple[str, ...]
    event_count: int
    counts_by_type: dict[str, int]
    products_viewed: tuple[str, ...]
    products_carted: tuple[str, ...]
    products_bought: tuple[str, ...]
    cart_value_minor: int
    revenue_minor: int
    currency: str | None
    store_ids: tuple[str, ...]
    avg_sentiment: float | None
    first_campaign_id: str | None
    campaign_ids: tuple[str, ...]
    bot_suspect: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionVersion(SessionSummary):
    """One emitted version of a session; a higher ``version`` of the same ``session_id`` supersedes a lower.

    ``status``: "open" (may still change), "closed" (the sweep judged it complete; a late event within the
    grace can still reopen it with a higher version), "merged" (superseded: delete it downstream, its events
    now belong to ``merged_into``).
    """

    session_id: str
    status: str
    merged_into: str | None
    version: int

    def to_record(self) -> dict[str, Any]:
        """A plain dict (lists, no tuples) ready for the Avro encoder."""
        record: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(self, name)
            record[name] = list(value) if isinstance(value, tuple) else value
        record["counts_by_type"] = dict(self.counts_by_type)
        return record


_FIELDS = ("session_id", "customer_id", *(f for f in SessionSummary.__dataclass_fields__ if f != "customer_id"),
           "status", "merged_into", "version")  # fmt: skip


def summary_values(customer_id: str, facts: Sequence[Fact], bot_suspect: bool) -> dict[str, Any]:
    """Keyword arguments for :class:`SessionSummary`/:class:`SessionVersion` from facts sorted by (t, id)."""
    path: list[str] = []
    counts: dict[str, int] = {}
    viewed: set[str] = set()
    carted: set[str] = set()
    bought: set[str] = set()
    stores: set[str] = set()
    campaigns: set[str] = set()
    first_campaign: str | None = None
    sentiments: list[float] = []
    cart: list[Fact] = []
    revenue: list[Fact] = []
    for f in facts:
        if not path or path[-1] != f.channel:
            path.append(f.channel)
        etype = f.event_type
        counts[etype] = counts.get(etype, 0) + 1
        if f.products:
            (viewed if etype == "product_view" else carted if etype == "add_to_cart" else bought).update(f.products)
        if f.money:
            (cart if etype in _CART_SIGN else revenue).append(f)
        if f.store_id is not None:
            stores.add(f.store_id)
        if f.sentiment is not None:
            sentiments.append(f.sentiment)
        if f.campaign is not None:
            campaigns.add(f.campaign)
            if first_campaign is None:
                first_campaign = f.campaign
    currency = next((f.currency for f in revenue if f.currency), None) or next(
        (f.currency for f in cart if f.currency), None
    )
    start, end = facts[0].t, facts[-1].t
    return {
        "customer_id": customer_id,
        "start_ms": start,
        "end_ms": end,
        "duration_s": (end - start) // 1000,
        "channel_path": ">".join(path),
        "channels": tuple(sorted(set(path))),
        "event_count": len(facts),
        "counts_by_type": dict(sorted(counts.items())),
        "products_viewed": tuple(sorted(viewed)),
        "products_carted": tuple(sorted(carted)),
        "products_bought": tuple(sorted(bought)),
        "cart_value_minor": max(0, sum(f.money for f in cart if f.currency == currency)),
        "revenue_minor": sum(f.money for f in revenue if f.currency == currency),
        "currency": currency,
        "store_ids": tuple(sorted(stores)),
        "avg_sentiment": math.fsum(sentiments) / len(sentiments) if sentiments else None,
        "first_campaign_id": first_campaign,
        "campaign_ids": tuple(sorted(campaigns)),
        "bot_suspect": bot_suspect,
    }
