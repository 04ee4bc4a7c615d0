"""Next-best-action triggers: timer-driven patterns with time limits, and their governance.

Patterns (each :class:`Candidate` says why it fired and which events prove it):

* ``cart_abandoned``: products added, no purchase within ``abandon_ms`` (fires on the timer, or on the
  customer's next event when that is later in event time);
* ``store_visit_open_cart``: a store entry (store visit, app geofence) within ``open_cart_ms`` of the last add
  to a cart that no purchase closed; emitted on the visit event itself;
* ``cross_channel_return``: a product of an abandoned cart viewed again on another channel;
* ``negative_sentiment``: a social event of a known customer with sentiment <= ``negative_sentiment``;
* ``campaign_no_follow_up``: a campaign touch, then no event for ``follow_up_ms``;
* ``win_back`` and ``churn_risk`` come from the churn band (:mod:`pipeline.domain.churn`) via :func:`candidate`.

Governance (:func:`govern`): customers without marketing consent (false or never given; the consent of the
latest event in event time that states one) get nothing; at most one signal per customer and type within
``cap_ms`` (event time); a holdout arm per campaign or trigger type, drawn once per person by
hash(customer, key) < ``holdout_share`` and then kept in the state (it stays with the person when profiles
merge: the arm assigned first wins), flags the signal ``holdout=true`` (recorded, not to be acted on).
Guarantees: the same inputs in the same event-time order give the same signals with the same ids; a signal id
depends on the signal type, its event time and its evidence only, never on the profile id. Not guaranteed: a
signal suppressed by consent or cap is not re-emitted later.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pipeline.domain.records import CustomerEventRecord

HOUR_MS = 3_600_000
STORE_ENTRY = frozenset({"store_visit", "store_geofence_enter"})
PURCHASES = frozenset({"purchase", "pos_purchase"})
_MAX_CART = 10
_ABANDONED, _OFFERED, _RETURNED = 1, 2, 4


@dataclass(frozen=True)
class TriggerPolicy:
    abandon_ms: int = HOUR_MS
    open_cart_ms: int = 48 * HOUR_MS
    cap_ms: int = 24 * HOUR_MS
    follow_up_ms: int = 7 * 24 * HOUR_MS
    holdout_share: float = 0.1
    negative_sentiment: float = -0.5

    def __post_init__(self) -> None:
        if not 0 <= self.holdout_share < 1 or min(self.abandon_ms, self.open_cart_ms, self.follow_up_ms) <= 0:
            raise ValueError(f"invalid trigger policy: {self}")


@dataclass(slots=True)
class TriggerState:
    """Open cart (products, evidence ids, last add time, channel, which cart signals fired), the pending
    campaign touch, the last event time, consent and the event time it was stated at, the last firing time per
    signal type (frequency caps), the holdout arm per campaign or trigger ([in holdout, assigned at]), and the
    last cart a purchase closed (a store visit delivered after that purchase still finds the cart it saw)."""

    cart: list[str] = field(default_factory=list)
    cart_ids: list[str] = field(default_factory=list)
    cart_ms: int | None = None
    cart_channel: str | None = None
    cart_flags: int = 0
    campaign: list[Any] | None = None  # [campaign_id, event time, event id]
    last_ms: int | None = None
    consent: bool | None = None
    fired: dict[str, int] = field(default_factory=dict)
    consent_ms: int | None = None
    arms: dict[str, list[Any]] = field(default_factory=dict)
    closed: list[Any] | None = None  # last cart a purchase closed: [products, ids, cart_ms, closed_ms, channel, flags]

    def to_list(self) -> list[Any]:
        return [
            self.cart,
            self.cart_ids,
            self.cart_ms,
            self.cart_channel,
            self.cart_flags,
            self.campaign,
            self.last_ms,
            self.consent,
            self.fired,
            self.consent_ms,
            self.arms,
            self.closed,
        ]

    @classmethod
    def from_list(cls, v: list[Any]) -> TriggerState:
        return cls(*v)

    def clear_cart(self) -> None:
        self.cart, self.cart_ids, self.cart_ms, self.cart_channel, self.cart_flags = [], [], None, None, 0


class Candidate(NamedTuple):
    """A pattern that matched, before governance."""

    signal_type: str
    event_time: int
    reason: str
    evidence: tuple[str, ...]
    products: tuple[str, ...] = ()
    channel: str | None = None
    store_id: str | None = None
    campaign_id: str | None = None
    score: float | None = None
    details: tuple[tuple[str, str], ...] = ()


class Signal(NamedTuple):
    """A governed signal, shaped like the Avro ``signal`` v1 record (:meth:`to_record`)."""

    signal_id: str
    customer_id: str
    candidate: Candidate
    holdout: bool
    emitted_at: int

    def to_record(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "signal_id": self.signal_id,
            "customer_id": self.customer_id,
            "signal_type": c.signal_type,
            "event_time": c.event_time,
            "emitted_at": self.emitted_at,
            "reason": c.reason,
            "evidence_event_ids": list(c.evidence),
            "product_ids": list(c.products),
            "channel": c.channel,
            "store_id": c.store_id,
            "campaign_id": c.campaign_id,
            "holdout": self.holdout,
            "score": c.score,
            "details": dict(c.details),
        }


def _products(ev: CustomerEventRecord) -> list[str]:
    ids = [i["product_id"] for i in ev["items"]]
    return [*ids, ev["product_id"]] if ev["product_id"] else ids


def timers(st: TriggerState, now_ms: int, p: TriggerPolicy) -> list[Candidate]:
    """Patterns whose time limit has passed at event time ``now_ms``. Each fires once per cart / campaign
    touch."""
    out: list[Candidate] = []
    if st.cart_ms is not None and not st.cart_flags & _ABANDONED and now_ms - st.cart_ms >= p.abandon_ms:
        st.cart_flags |= _ABANDONED
        hours = p.abandon_ms / HOUR_MS
        out.append(
            Candidate(
                "cart_abandoned",
                st.cart_ms + p.abandon_ms,
                f"{len(st.cart)} products in the cart, no purchase within {hours:g} h",
                tuple(st.cart_ids),
                tuple(st.cart),
                st.cart_channel,
            )
        )
    if st.campaign is not None and st.last_ms is not None and now_ms - st.last_ms >= p.follow_up_ms:
        cid, t, eid = st.campaign
        st.campaign = None
        days = p.follow_up_ms / (24 * HOUR_MS)
        out.append(
            Candidate(
                "campaign_no_follow_up",
                st.last_ms + p.follow_up_ms,
                f"engaged by campaign {cid}, then no activity for {days:g} days",
                (eid,),
                campaign_id=cid,
                details=(("touch_time_ms", str(t)),),
            )
        )
    return out


def next_due(st: TriggerState, p: TriggerPolicy) -> int | None:
    """The earliest event time at which :func:`timers` would fire something, or None."""
    due: list[int] = []
    if st.cart_ms is not None and not st.cart_flags & _ABANDONED:
        due.append(st.cart_ms + p.abandon_ms)
    if st.campaign is not None and st.last_ms is not None:
        due.append(st.last_ms + p.follow_up_ms)
    return min(due) if due else None


def on_event(st: TriggerState, ev: CustomerEventRecord, known: bool, p: TriggerPolicy) -> list[Candidate]:
    """Update the trigger state with one event (in event-time order) and return the patterns it completes."""
    t, etype, channel, eid = ev["event_time"], ev["event_type"], ev["channel"], ev["event_id"]
    out = timers(st, t, p)
    if ev["consent_marketing"] is not None and (st.consent_ms is None or t >= st.consent_ms):
        st.consent, st.consent_ms = ev["consent_marketing"], t
    if etype == "add_to_cart":
        if st.cart_flags & _ABANDONED:  # a new add after abandonment starts a new cart episode
            st.cart_flags = 0
        st.cart = list(dict.fromkeys([*st.cart, *_products(ev)]))[-_MAX_CART:]
        st.cart_ids = [*st.cart_ids, eid][-5:]
        st.cart_ms, st.cart_channel = t, channel
    elif etype == "remove_from_cart":
        gone = set(_products(ev))
        st.cart = [x for x in st.cart if x not in gone]
        if not st.cart:
            st.clear_cart()
    elif etype in PURCHASES:
        if st.cart_ms is None or t >= st.cart_ms:  # a purchase delivered late does not close a later cart
            if st.cart and st.cart_ms is not None:
                st.closed = [st.cart, st.cart_ids, st.cart_ms, t, st.cart_channel, st.cart_flags]
            st.clear_cart()
    elif etype in STORE_ENTRY:
        out += _store_entry(st, ev, p)
    elif (
        etype == "product_view"
        and st.cart_flags & _ABANDONED
        and not st.cart_flags & _RETURNED
        and channel != st.cart_channel
        and ev["product_id"] in st.cart
    ):
        st.cart_flags |= _RETURNED
        out.append(
            Candidate(
                "cross_channel_return",
                t,
                f"viewed abandoned cart product {ev['product_id']} again on {channel} (cart was on {st.cart_channel})",
                (eid, *st.cart_ids),
                (ev["product_id"],),
                channel,
            )
        )
    sentiment = ev["sentiment"]
    if channel == "social" and known and sentiment is not None and sentiment <= p.negative_sentiment:
        out.append(
            Candidate(
                "negative_sentiment",
                t,
                f"negative {etype} on {ev['platform'] or 'social'} (sentiment {sentiment:.2f})",
                (eid,),
                tuple(_products(ev)),
                channel,
                score=sentiment,
            )
        )
    campaign = ev["campaign_id"] or ev["utm_campaign"]
    if campaign:
        st.campaign = [campaign, t, eid]
    elif st.campaign is not None and t > st.campaign[1] + HOUR_MS:
        st.campaign = None  # followed up: activity after the visit the touch started
    st.last_ms = t if st.last_ms is None else max(st.last_ms, t)
    return out


def _store_entry(st: TriggerState, ev: CustomerEventRecord, p: TriggerPolicy) -> list[Candidate]:
    """The in-store offer: the cart that was open at the visit's event time (the current one, or the last one a
    purchase closed after the visit, when the visit was delivered late)."""
    t = ev["event_time"]
    if st.cart and st.cart_ms is not None and st.cart_ms <= t:
        cart, ids, cart_ms, cart_channel, flags = st.cart, st.cart_ids, st.cart_ms, st.cart_channel, st.cart_flags
        closed = None
    elif st.closed is not None and st.closed[2] <= t < st.closed[3]:
        closed = st.closed
        cart, ids, cart_ms, _closed_ms, cart_channel, flags = closed
    else:
        return []
    age = t - cart_ms
    if flags & _OFFERED or age > p.open_cart_ms:
        return []
    if closed is None:
        st.cart_flags |= _OFFERED
    else:
        closed[5] = flags | _OFFERED
    why = (f"entered store {ev['store_id'] or '?'} ({ev['visit_method'] or ev['event_type']}) {age / HOUR_MS:.1f} h "
           f"after leaving {len(cart)} products in a {cart_channel} cart: in-store offer for them")  # fmt: skip
    return [Candidate("store_visit_open_cart", t, why, (ev["event_id"], *ids), tuple(cart), ev["channel"],
                      ev["store_id"])]  # fmt: skip


def in_holdout(customer_id: str, key: str, share: float) -> bool:
    """Deterministic: the same customer and campaign/trigger are always in or out, whatever the worker."""
    digest = hashlib.sha256(f"{customer_id}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def arm(st: TriggerState, customer_id: str, key: str, at_ms: int, share: float) -> bool:
    """The person's holdout arm for ``key``: drawn at first use (``at_ms`` in event time) and kept."""
    found = st.arms.get(key)
    if found is None:
        found = st.arms[key] = [in_holdout(customer_id, key, share), at_ms]
    return bool(found[0])


def merge_arms(survivor: TriggerState, absorbed: TriggerState) -> None:
    """Arms of two profiles of one person: per key the one drawn first (in event time) stays."""
    for key, (hold, at) in absorbed.arms.items():
        mine = survivor.arms.get(key)
        if mine is None or at < mine[1]:
            survivor.arms[key] = [hold, at]


def signal_id(c: Candidate) -> str:
    """Signal type, event time and evidence: the same firing has the same id under any profile id."""
    raw = "\x1f".join((c.signal_type, str(c.event_time), *c.evidence))
    return "sg-" + hashlib.sha256(raw.encode()).hexdigest()[:24]


class Governed(NamedTuple):
    signals: list[Signal]
    suppressed: list[tuple[Candidate, str]]  # (candidate, "consent" | "cap")


def govern(st: TriggerState, customer_id: str, cands: list[Candidate], now_ms: int, p: TriggerPolicy) -> Governed:
    """Apply consent, frequency caps and the holdout; caps and arms are recorded in ``st``. ``now_ms`` is the
    processing time, used for ``emitted_at`` only."""
    signals: list[Signal] = []
    suppressed: list[tuple[Candidate, str]] = []
    for c in cands:
        if st.consent is not True:
            suppressed.append((c, "consent"))
            continue
        last = st.fired.get(c.signal_type)
        if last is not None and abs(c.event_time - last) < p.cap_ms:
            suppressed.append((c, "cap"))
            continue
        st.fired[c.signal_type] = c.event_time
        hold = arm(st, customer_id, c.campaign_id or c.signal_type, c.event_time, p.holdout_share)
        signals.append(Signal(signal_id(c), customer_id, c, hold, now_ms))
    return Governed(signals, suppressed)
