"""The simulated people: their identifiers, devices, consent, habits, churn and session plan.

Guarantees:

* Each person is drawn from their own RNG (derived from seed and index), so person ``i`` is the same
  whatever ``customers`` is and in whatever order people are built.
* Identifier values are unique per person by construction (the person index is part of each value or a
  bijection of it); the only identifiers shared between people are the store kiosks and family tablets,
  listed by :func:`shared_devices`.
* Every person has at least one web cookie, so every planned session can be attributed to someone.
* ``plan`` is sorted by time, lies in ``[join_ms, active_end_ms)`` and is empty after churn; the
  abandoned-cart journey has no other session between the cart and the store visit (so nothing else
  can close the cart first), and the visit is within 48 h of the cart.
* Campaign holdout is a hash of campaign id and person id (see :func:`in_holdout`); holdout people get
  no campaign session, and neither does anyone outside the audience (no consent, no app/e-mail).
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import NamedTuple

from pipeline.simulate.catalog import (
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    SOCIAL_PLATFORMS,
    Campaign,
    Catalog,
)
from pipeline.simulate.config import DAY_MS, HOUR_MS, MINUTE_MS, SimConfig, stable_hash

# Online activity peaks in the evening; stores are open 09:00-20:00.
_ONLINE_HOURS = tuple(
    accumulate(
        (
            1.0,
            0.6,
            0.4,
            0.3,
            0.3,
            0.4,
            0.8,
            1.5,
            2.0,
            2.0,
            2.2,
            2.4,
            2.6,
            2.4,
            2.2,
            2.2,
            2.4,
            2.8,
            3.2,
            3.6,
            3.8,
            3.4,
            2.6,
            1.6,
        )
    )
)
_STORE_HOURS = tuple(accumulate(1.0 if 9 <= h < 20 else 0.0 for h in range(24)))
_JOURNEY_PROBABILITY = 0.12
_PUSH_RESPONSE = 0.15
_EMAIL_RESPONSE = 0.08
_HOUSEHOLD_SIZE = 4
_TABLET_HOUSEHOLDS_PERCENT = 8


class Session(NamedTuple):
    """A planned visit. ``visit_ms > 0`` marks the abandoned-cart journey (web cart, then that store visit)."""

    t_ms: int
    channel: str
    buy: bool
    campaign: str | None = None
    visit_ms: int = 0


@dataclass(frozen=True, slots=True)
class Person:
    """One true person (``person_id``) and everything that identifies them on some channel."""

    idx: int
    person_id: str
    customer_id: str | None
    email: str | None
    phone: str | None
    loyalty_id: str | None
    social_handle: str | None
    platform: str | None
    cookies: tuple[str, ...]
    devices: tuple[str, ...]
    device_os: tuple[str, ...]
    tablet_id: str | None
    home_store: str
    currency: str
    consent_marketing: bool
    mood: float
    browse_rate: float
    purchase_rate: float
    join_ms: int
    churn_at_ms: int | None
    active_end_ms: int
    plan: tuple[Session, ...]

    @property
    def store_detectable(self) -> bool:
        """A store visit can be seen: loyalty scan, app beacon or Wi-Fi login with e-mail."""
        return bool(self.loyalty_id or self.devices or self.email)

    @property
    def pos_identifiable(self) -> bool:
        """A till receipt can carry an identifier (loyalty card, e-receipt e-mail or phone)."""
        return bool(self.loyalty_id or self.email or self.phone)


def shared_devices(config: SimConfig, catalog: Catalog) -> dict[str, str]:
    """Every device id used by more than one person -> what it is (``store_kiosk`` or ``family_tablet``)."""
    shared = dict.fromkeys(catalog.kiosk_devices(), "store_kiosk")
    for block in range((config.customers + _HOUSEHOLD_SIZE - 1) // _HOUSEHOLD_SIZE):
        tablet = _household_tablet(config.seed, block)
        if tablet is not None:
            shared[tablet] = "family_tablet"
    return shared


def _household_tablet(seed: int, block: int) -> str | None:
    if stable_hash(seed, "household", block) % 100 >= _TABLET_HOUSEHOLDS_PERCENT:
        return None
    return f"tablet-{stable_hash(seed, 'tablet', block):016x}"


def in_audience(person: Person, campaign: Campaign) -> bool:
    """Could be sent this campaign: known customer, marketing consent, reachable, joined before the send."""
    if person.customer_id is None or not person.consent_marketing or person.join_ms > campaign.sent_ms:
        return False
    return bool(person.devices) if campaign.channel == "push" else person.email is not None


def in_holdout(campaign_id: str, person_id: str, share: float) -> bool:
    """Deterministic randomised holdout: the same person is in or out of a campaign's holdout forever."""
    return stable_hash("holdout", campaign_id, person_id) % 10_000 < round(share * 10_000)


def new_uuid(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (so it is reproducible, unlike ``uuid.uuid4``)."""
    h = f"{(rng.getrandbits(128) & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (Knuth for small means, normal approximation for large ones)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def draw_time(rng: random.Random, lo: int, hi: int, cum_hours: tuple[float, ...]) -> int:
    """A time in ``[lo, hi)`` with the given hour-of-day profile (falls back to uniform in short windows)."""
    first_day, last_day = lo // DAY_MS, (hi - 1) // DAY_MS
    for _ in range(8):
        hour = bisect_right(cum_hours, rng.random() * cum_hours[-1])
        t = rng.randint(first_day, last_day) * DAY_MS + min(hour, 23) * HOUR_MS + rng.randrange(HOUR_MS)
        if lo <= t < hi:
            return t
    return rng.randrange(lo, hi)


def build_population(config: SimConfig, catalog: Catalog) -> tuple[Person, ...]:
    """All ``config.customers`` people, in index order."""
    return tuple(build_person(config, catalog, i) for i in range(config.customers))


def build_person(config: SimConfig, catalog: Catalog, idx: int) -> Person:
    """Person ``idx``: a pure function of ``(config, idx)`` (and the shared catalogue)."""
    rng = random.Random(stable_hash(config.seed, "person", idx))
    seed_offset = stable_hash(config.seed, "ids")
    registered = rng.random() < 0.72
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first}.{last}{idx}@{rng.choice(EMAIL_DOMAINS)}" if rng.random() < (0.8 if registered else 0.3) else None
    phone = None
    if rng.random() < 0.35:
        # Real mobile ranges (valid for libphonenumber) made unique by the index.
        country = rng.choice(("DE", "FR", "NL"))
        if country == "DE":
            phone = f"+49151{idx % 10**8:08d}"
        elif country == "FR":
            phone = f"+336{idx % 10**8:08d}"
        else:
            phone = f"+3161{idx % 10**7:07d}"
    loyalty = f"LY{(idx * 7_919 + seed_offset) % 10**10:010d}" if rng.random() < 0.45 else None
    handle, platform = None, None
    if rng.random() < 0.3:
        handle, platform = f"@{first}{last[0]}_{idx}", rng.choice(SOCIAL_PLATFORMS)
    cookies = tuple(new_uuid(rng) for _ in range(1 if rng.random() < 0.7 else 2))
    devices: tuple[str, ...] = ()
    device_os: tuple[str, ...] = ()
    if registered and rng.random() < 0.5:
        n = rng.choices((1, 2, 3), weights=(0.6, 0.3, 0.1))[0]
        device_os = tuple(rng.choice(("ios", "android")) for _ in range(n))
        devices = tuple(new_uuid(rng).upper() if os == "ios" else f"{rng.getrandbits(64):016x}" for os in device_os)
    tablet = _household_tablet(config.seed, idx // _HOUSEHOLD_SIZE) if registered else None
    home_store = catalog.pick_store(rng).store_id
    currency = "USD" if rng.random() < 0.03 else "EUR"
    consent = rng.random() >= config.consent_denied_share
    mood = min(0.95, max(-0.9, rng.gauss(0.25, 0.35)))
    # Gamma-distributed rates (the NBD/Pareto picture): most people are occasional, a few are heavy users.
    browse_rate = rng.gammavariate(0.9, 0.066 * config.activity / 0.9)
    purchase_rate = rng.gammavariate(0.6, 0.02 * config.activity / 0.6)
    start, end = config.start_ms, config.end_ms
    join = start if rng.random() < 0.8 else rng.randrange(start, end - HOUR_MS)
    churn: int | None = None
    if rng.random() < config.churn_share and end - join > DAY_MS:
        # Not in the first week: a churner must have had some activity to lose.
        churn = rng.randrange(max(join, start + (end - start) // 7), end - HOUR_MS)
    person = Person(
        idx,
        f"person-{idx:06d}",
        f"C{(idx * 104_729 + seed_offset) % 10**9:09d}" if registered else None,
        email,
        phone,
        loyalty,
        handle,
        platform,
        cookies,
        devices,
        device_os,
        tablet,
        home_store,
        currency,
        consent,
        mood,
        browse_rate,
        purchase_rate,
        join,
        churn,
        churn if churn is not None else end,
        (),
    )
    return replace(person, plan=_plan(rng, config, catalog, person))


def _plan(rng: random.Random, config: SimConfig, catalog: Catalog, p: Person) -> tuple[Session, ...]:
    lo, hi = p.join_ms, p.active_end_ms
    if hi - lo < HOUR_MS:
        return ()
    span_days = (hi - lo) / DAY_MS
    browse_channels: list[str] = ["web"]
    browse_weights: list[float] = [1.0]
    buy_channels: list[str] = ["web"]
    buy_weights: list[float] = [1.0]
    if p.devices or p.tablet_id:
        browse_channels.append("mobile")
        browse_weights.append(1.6 if p.devices else 0.4)
        if p.devices:
            buy_channels.append("mobile")
            buy_weights.append(0.8)
    if p.store_detectable:
        browse_channels.append("store")
        browse_weights.append(0.35)
        if p.pos_identifiable:
            buy_channels.append("store")
            buy_weights.append(1.0)
    sessions: list[Session] = []
    for _ in range(poisson(rng, p.browse_rate * span_days)):
        channel = rng.choices(browse_channels, weights=browse_weights)[0]
        hours = _STORE_HOURS if channel == "store" else _ONLINE_HOURS
        sessions.append(Session(draw_time(rng, lo, hi, hours), channel, False))
    for _ in range(poisson(rng, p.purchase_rate * span_days)):
        channel = rng.choices(buy_channels, weights=buy_weights)[0]
        hours = _STORE_HOURS if channel == "store" else _ONLINE_HOURS
        sessions.append(Session(draw_time(rng, lo, hi, hours), channel, True))
    if p.social_handle:
        for _ in range(poisson(rng, 0.03 * config.activity * span_days)):
            sessions.append(Session(draw_time(rng, lo, hi, _ONLINE_HOURS), "social", False))
    for campaign in catalog.campaigns:
        if not (lo <= campaign.sent_ms < hi) or not in_audience(p, campaign):
            continue
        if in_holdout(campaign.campaign_id, p.person_id, config.holdout_share):
            continue
        response = _PUSH_RESPONSE if campaign.channel == "push" else _EMAIL_RESPONSE
        if rng.random() < response:
            t = campaign.sent_ms + MINUTE_MS + int(rng.expovariate(1 / (2 * HOUR_MS)))
            if t < hi:
                # The campaign works: responders buy far more often than an ordinary session does.
                channel = "mobile" if campaign.channel == "push" else "web"
                sessions.append(Session(t, channel, rng.random() < 0.35, campaign.campaign_id))
    journey = _plan_journey(rng, p, lo, hi) if rng.random() < _JOURNEY_PROBABILITY else None
    if journey is not None:
        cart, visit = journey
        # Nothing else may happen in between, or another purchase could close the cart first.
        sessions = [s for s in sessions if not cart - 2 * HOUR_MS <= s.t_ms <= visit + 2 * HOUR_MS]
        sessions.append(Session(cart, "web", False, None, visit))
    sessions.sort()
    return tuple(sessions)


def _plan_journey(rng: random.Random, p: Person, lo: int, hi: int) -> tuple[int, int] | None:
    """Cart at night (22:00-01:00), store visit in opening hours 3-47 h later, both before churn/end."""
    # The till must be able to name the person too (loyalty card or e-receipt), or the purchase is lost.
    if p.customer_id is None or not (p.loyalty_id or p.email):
        return None
    first_day, last_day = lo // DAY_MS, (hi - 2 * DAY_MS) // DAY_MS
    if last_day < first_day:
        return None
    cart = rng.randint(first_day, last_day) * DAY_MS + 22 * HOUR_MS + rng.randrange(3 * HOUR_MS)
    for _ in range(20):
        visit = cart + rng.randrange(3 * HOUR_MS, 47 * HOUR_MS)
        if 9 * HOUR_MS <= visit % DAY_MS < 19 * HOUR_MS and lo <= cart and visit < hi - HOUR_MS:
            return cart, visit
    return None
