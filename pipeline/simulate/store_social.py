"""Store and social sessions: detected visits, till receipts, returns, the shared kiosk, social posts.

Guarantees: a visit is only emitted with an identifier the detection method really has (loyalty scan,
signed-in app beacon, Wi-Fi e-mail); a receipt without any identifier is not emitted at all (it would be
an anonymous cash sale); store money is EUR; kiosk events always carry the signed-in customer id;
sentiment is in [-1, 1] and review ratings in 1..5.
"""

from __future__ import annotations

import random
from dataclasses import replace

from pipeline.simulate import records as rec
from pipeline.simulate.catalog import NEGATIVE_TEXTS, NEUTRAL_TEXTS, POSITIVE_TEXTS
from pipeline.simulate.config import DAY_MS
from pipeline.simulate.messages import SimMessage
from pipeline.simulate.sessionkit import APP_VERSIONS, JOURNEY_OPEN_CART, Ctx, SessionKit


class StoreSocialSessions(SessionKit):
    """Expanders for ``store`` and ``social`` sessions (and the store half of the open-cart journey)."""

    # --- store -------------------------------------------------------------------------------------------

    def _store(
        self, c: Ctx, buy: bool, journey_cart: tuple[list[rec.LineItem], list[SimMessage]] | None = None
    ) -> None:
        p, st, rng = c.p, c.st, c.rng
        store_id = p.home_store if rng.random() < 0.85 or journey_cart else self.catalog.pick_store(rng).store_id
        beacon_ok = bool(p.devices) and 0 in st.devices_in
        methods = [m for m, ok in (("loyalty_scan", p.loyalty_id), ("beacon", beacon_ok), ("wifi", p.email)) if ok]
        if not methods:
            methods = ["beacon"]  # an app user who never signed in: the beacon still sees the install
        method = methods[0] if journey_cart else rng.choice(methods)
        if p.devices and rng.random() < 0.5:
            ids = rec.identifiers(device_id=p.devices[0], customer_id=p.customer_id if beacon_ok else None)
            env = self._env(c, ids)
            self._emit(
                c,
                "mobile",
                rec.mobile(
                    env, "store_geofence_enter", app_version=APP_VERSIONS[-1], os=p.device_os[0], store_id=store_id
                ),
            )
            c.tick(20, 120)
        if method == "loyalty_scan":
            ids = rec.identifiers(loyalty_id=p.loyalty_id)
        elif method == "beacon":
            ids = rec.identifiers(device_id=p.devices[0], customer_id=p.customer_id if beacon_ok else None)
        else:
            ids = rec.identifiers(email=p.email)
        # Detection systems do not capture consent; null means "unknown" downstream.
        visit = self._emit(
            c, "store", rec.store(self._env(c, ids, with_consent=False), "store_visit", store_id, visit_method=method)
        )
        kiosk = self._kiosks.get(store_id)
        if kiosk and p.customer_id and not journey_cart and rng.random() < 0.3:
            self._kiosk(c, kiosk)
        if not (buy or journey_cart):
            return
        c.tick(300, 2400)
        pos_ids = rec.identifiers(
            loyalty_id=p.loyalty_id,
            email=_email_as_typed(rng, p.email) if p.email and (rng.random() < 0.35 or not p.loyalty_id) else None,
            phone=_phone_as_typed(rng, p.phone) if p.phone and rng.random() < 0.1 else None,
        )
        if not any(pos_ids.values()):
            return  # an anonymous cash purchase never reaches the stream
        if journey_cart:
            cart_items, carts = journey_cart
            # Same products, store prices (EUR), sometimes one impulse item on top.
            extra = self.catalog.pick_products(rng, 1) if rng.random() < 0.3 else []
            bought = [self._by_id(i["product_id"]) for i in cart_items] + extra
            items = self._basket(c, bought, "EUR")
        else:
            # Stores price in EUR whoever the customer is.
            items = self._basket(c, self.catalog.pick_products(rng, rng.randint(1, 4)), "EUR")
        st.orders += 1
        receipt = f"R{store_id[-3:]}-{p.idx:07d}-{st.orders:03d}"
        env = self._env(c, pos_ids)
        purchase = self._emit(
            c,
            "store",
            rec.store(
                env,
                "pos_purchase",
                store_id,
                receipt_id=receipt,
                items=items,
                amount_minor=rec.total(items),
                currency="EUR",
            ),
        )
        st.purchases.extend(i["product_id"] for i in items)
        if journey_cart:
            cart_items, carts = journey_cart
            note = {
                "journey": JOURNEY_OPEN_CART,
                "person_id": p.person_id,
                "product_ids": [i["product_id"] for i in cart_items],
                "cart_event_id": carts[-1].event_id,
                "cart_event_ids": [m.event_id for m in carts],
                "cart_time_ms": carts[-1].event_time_ms,
                "visit_event_id": visit.event_id,
                "visit_time_ms": visit.event_time_ms,
                "purchase_event_id": purchase.event_id,
                "store_id": store_id,
            }
            c.out[c.out.index(visit)] = replace(visit, note=note)
        elif rng.random() < 0.04:
            self._return(c, store_id, receipt, pos_ids, items)

    def _return(
        self, c: Ctx, store_id: str, receipt: str, ids: dict[str, str | None], items: list[rec.LineItem]
    ) -> None:
        t = c.t + c.rng.randint(2, 10) * DAY_MS
        if t >= c.p.active_end_ms:
            return
        c.t = t
        back = items[:1]
        env = self._env(c, ids)
        self._emit(
            c,
            "store",
            rec.store(
                env,
                "return",
                store_id,
                receipt_id=f"{receipt}-RET",
                original_receipt_id=receipt,
                items=back,
                amount_minor=rec.total(back),
                currency="EUR",
            ),
        )

    def _kiosk(self, c: Ctx, kiosk: str) -> None:
        """The store's shared tablet: whoever uses it signs in, so every event carries their customer id."""
        c.tick(60, 600)
        ids = rec.identifiers(device_id=kiosk, customer_id=c.p.customer_id)
        env = self._env(c, ids)
        self._emit(
            c, "mobile", rec.mobile(env, "login", screen_name="kiosk_login", app_version="kiosk-2.1", os="android")
        )
        for prod in self.catalog.pick_products(c.rng, c.rng.randint(1, 3)):
            c.tick(5, 60)
            env = self._env(c, ids)
            self._emit(
                c,
                "mobile",
                rec.mobile(
                    env,
                    "product_view",
                    screen_name="product",
                    app_version="kiosk-2.1",
                    os="android",
                    product_id=prod.product_id,
                ),
            )

    # --- social ------------------------------------------------------------------------------------------

    def _social(self, c: Ctx) -> None:
        p, st, rng = c.p, c.st, c.rng
        assert p.social_handle is not None and p.platform is not None
        if p.customer_id and not st.account_linked and rng.random() < 0.5:
            ids = rec.identifiers(social_handle=p.social_handle, customer_id=p.customer_id)
            self._emit(c, "social", rec.social(self._env(c, ids), "account_link", p.platform))
            st.account_linked = True
            c.tick(60, 3600)
        ids = rec.identifiers(social_handle=p.social_handle)
        sentiment = round(min(1.0, max(-1.0, p.mood + rng.gauss(0.0, 0.3))), 3)
        texts = POSITIVE_TEXTS if sentiment > 0.3 else NEGATIVE_TEXTS if sentiment < -0.2 else NEUTRAL_TEXTS
        roll = rng.random()
        product_id = rng.choice(st.purchases) if st.purchases and roll < 0.3 else None
        text = rng.choice(texts).format(p=self._by_id(product_id).name if product_id else "jacket")
        # Public posts are scraped by the listening tool: no consent is captured for them.
        env = self._env(c, ids, with_consent=False)
        if product_id is not None:
            rating = min(5, max(1, round(3 + 2 * sentiment + rng.gauss(0.0, 0.5))))
            record = rec.social(
                env, "review", p.platform, text=text, rating=rating, sentiment=sentiment, product_id=product_id
            )
        else:
            kind = "mention" if roll < 0.7 else "comment"
            record = rec.social(env, kind, p.platform, text=text, sentiment=sentiment)
        self._emit(c, "social", record)


def _email_as_typed(rng: random.Random, email: str) -> str:
    """Till staff type addresses as they hear them: sometimes capitalised (ingest lower-cases)."""
    return email.capitalize() if rng.random() < 0.2 else email


def _phone_as_typed(rng: random.Random, phone: str) -> str:
    """Sometimes written with spaces; ingest normalises to E.164."""
    return f"{phone[:3]} {phone[3:6]} {phone[6:]}" if rng.random() < 0.3 else phone
