"""Shared machinery of the session expanders: per-person state, the session context, event emission.

Guarantees: every event goes through :meth:`SessionKit._emit`, which keys it by its first real identifier
and marks it valid; event ids come from the session's RNG, so they are reproducible. Subclasses
(``web_app``, ``store_social``) add one expander per channel; ``journeys`` composes them.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.simulate import records as rec
from pipeline.simulate.catalog import Catalog, Product
from pipeline.simulate.config import SimConfig
from pipeline.simulate.messages import VALID, SimMessage, key_for
from pipeline.simulate.population import Person, new_uuid

JOURNEY_OPEN_CART = "store_visit_with_open_cart"
APP_VERSIONS = ("5.9.2", "5.10.0", "5.10.1", "5.11.0")


class State:
    """What a person's next sessions need to remember (login state, purchases, counters)."""

    __slots__ = ("account_linked", "consent", "cookies_in", "devices_in", "orders", "purchases", "seq")

    def __init__(self, p: Person) -> None:
        self.seq = 1
        self.cookies_in: set[int] = set()
        self.devices_in: set[int] = set()
        self.purchases: list[str] = []
        self.orders = 0
        self.account_linked = False
        self.consent = {"marketing": p.consent_marketing, "analytics": True, "personalization": p.consent_marketing}


class Ctx:
    """One session being expanded: its person, RNG, time cursor and the events produced so far."""

    __slots__ = ("out", "p", "rng", "st", "t")

    def __init__(self, p: Person, st: State, rng: random.Random, t: int) -> None:
        self.p, self.st, self.rng, self.t = p, st, rng, t
        self.out: list[SimMessage] = []

    def tick(self, lo_s: int = 5, hi_s: int = 90) -> int:
        """Advance the clock by a human pause and return the new time."""
        self.t += self.rng.randint(lo_s, hi_s) * 1000
        return self.t


class SessionKit:
    """Catalogue lookups and event helpers used by every channel's session expander."""

    def __init__(self, config: SimConfig, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        self._products = {prod.product_id: prod for prod in catalog.products}
        self._kiosks = {s.store_id: s.kiosk_device_id for s in catalog.stores if s.kiosk_device_id}
        self._campaign_attr: dict[str, dict[str, str | None]] = {
            c.campaign_id: {
                "campaign_id": c.campaign_id,
                "utm_source": "app_push" if c.channel == "push" else "newsletter",
                "utm_medium": c.channel,
                "utm_campaign": c.name,
            }
            for c in catalog.campaigns
        }

    def _emit(self, c: Ctx, channel: str, record: dict[str, Any], version: int = 1) -> SimMessage:
        env = record["envelope"]
        msg = SimMessage(
            channel,
            key_for(env["identifiers"], env["event_id"]),
            VALID,
            VALID,
            env["event_time"],
            env["event_id"],
            c.p.person_id,
            channel,
            version,
            record,
        )
        c.out.append(msg)
        return msg

    def _env(
        self,
        c: Ctx,
        ids: dict[str, str | None],
        *,
        with_consent: bool = True,
        attribution: dict[str, str | None] | None = None,
    ) -> dict[str, Any]:
        return rec.envelope(new_uuid(c.rng), c.t, ids, c.st.consent if with_consent else None, attribution)

    def _web_event(self, c: Ctx, ids: dict[str, str | None], event_type: str, **fields: Any) -> SimMessage:
        attribution = fields.pop("attribution", None)
        # The old tag manager still sends v1 for a share of the traffic (schema evolution in the wild).
        version = 1 if c.rng.random() < self.config.web_v1_share else 2
        if version == 1:
            fields.pop("referrer", None)
        env = self._env(c, ids, attribution=attribution)
        return self._emit(c, "web", rec.web(version, env, event_type, **fields), version)

    def _basket(self, c: Ctx, products: list[Product], currency: str | None = None) -> list[rec.LineItem]:
        """Line items (one per distinct product) priced in ``currency`` (default: the person's)."""
        usd = (currency or c.p.currency) == "USD"
        lines: dict[str, tuple[str, int, int]] = {}
        for prod in products:
            qty = 1 if c.rng.random() < 0.85 else 2
            price = (prod.price_minor * 108 // 10_000) * 100 + 99 if usd else prod.price_minor
            lines.setdefault(prod.product_id, (prod.product_id, qty, price))
        return rec.line_items(list(lines.values()))

    def _by_id(self, product_id: str) -> Product:
        return self._products[product_id]
