"""Web and app sessions: anonymous browsing, logins that link cookies and devices, carts, purchases.

Guarantees: a cookie or device carries the customer id only after a login on it (kept in the person's
state); a purchase always comes with a currency; campaign sessions carry the campaign's attribution;
family-tablet sessions always start with a sign-in, since the device is shared.
"""

from __future__ import annotations

from pipeline.simulate import records as rec
from pipeline.simulate.catalog import PAID_ATTRIBUTIONS, REFERRERS, SITE, Product
from pipeline.simulate.messages import SimMessage
from pipeline.simulate.population import Session
from pipeline.simulate.sessionkit import APP_VERSIONS, Ctx, SessionKit


class WebAppSessions(SessionKit):
    """Expanders for ``web`` and ``mobile`` sessions."""

    # --- web ---------------------------------------------------------------------------------------------

    def _web_session_start(
        self, c: Ctx, campaign: str | None, force_login: bool, link_all: bool
    ) -> tuple[dict[str, str | None], list[Product]]:
        p, st, rng = c.p, c.st, c.rng
        ci = 0 if len(p.cookies) == 1 or rng.random() < 0.75 else 1
        anon = p.cookies[ci]
        ids = rec.identifiers(anonymous_id=anon, customer_id=p.customer_id if ci in st.cookies_in else None)
        attribution: dict[str, str | None] | None = None
        referrer = rng.choice(REFERRERS)
        if campaign is not None:
            attribution, referrer = self._campaign_attr[campaign], None
        elif rng.random() < 0.15:
            attribution = rng.choice(PAID_ATTRIBUTIONS)
        views = self.catalog.pick_products(rng, 1 + min(6, int(rng.expovariate(0.6))))
        landing = f"{SITE}/c/{views[0].category}" if rng.random() < 0.5 else f"{SITE}/"
        self._web_event(c, ids, "page_view", page_url=landing, referrer=referrer, attribution=attribution)
        wants_login = force_login or rng.random() < 0.3
        if p.customer_id and ((wants_login and ci not in st.cookies_in) or link_all):
            c.tick()
            login_ids = rec.identifiers(
                anonymous_id=anon,
                customer_id=p.customer_id,
                email=p.email if link_all or rng.random() < 0.5 else None,
                loyalty_id=p.loyalty_id if link_all or rng.random() < 0.3 else None,
            )
            self._web_event(c, login_ids, "login", page_url=f"{SITE}/account/login", referrer=landing)
            st.cookies_in.add(ci)
            ids = rec.identifiers(anonymous_id=anon, customer_id=p.customer_id)
        if rng.random() < 0.25:
            c.tick()
            query = f"{views[0].category} {views[0].name.split()[0]}"
            self._web_event(c, ids, "search", page_url=f"{SITE}/search", search_query=query)
        for prod in views:
            c.tick()
            self._web_event(c, ids, "product_view", page_url=f"{SITE}/p/{prod.product_id}", product_id=prod.product_id)
        return ids, views

    def _add_to_cart(self, c: Ctx, ids: dict[str, str | None], items: list[rec.LineItem]) -> list[SimMessage]:
        out = []
        for item in items:
            c.tick(10, 120)
            out.append(
                self._web_event(
                    c,
                    ids,
                    "add_to_cart",
                    page_url=f"{SITE}/p/{item['product_id']}",
                    product_id=item["product_id"],
                    quantity=item["quantity"],
                    unit_price_minor=item["unit_price_minor"],
                    currency=c.p.currency,
                )
            )
        return out

    def _web(self, c: Ctx, s: Session) -> None:
        p, st, rng = c.p, c.st, c.rng
        ids, views = self._web_session_start(c, s.campaign, force_login=s.buy and rng.random() < 0.8, link_all=False)
        if s.buy:
            items = self._basket(c, views[: rng.randint(1, 3)])
            self._add_to_cart(c, ids, items)
            amount = rec.total(items)
            c.tick(20, 180)
            self._web_event(
                c,
                ids,
                "checkout_start",
                page_url=f"{SITE}/checkout",
                items=items,
                amount_minor=amount,
                currency=p.currency,
            )
            if ids["customer_id"] is None and p.email:
                ids = {**ids, "email": p.email}  # guest checkout asks for an e-mail address
            st.orders += 1
            c.tick(30, 240)
            self._web_event(
                c,
                ids,
                "purchase",
                page_url=f"{SITE}/checkout/done",
                order_id=f"W{p.idx:07d}-{st.orders:03d}",
                items=items,
                amount_minor=amount,
                currency=p.currency,
            )
            st.purchases.extend(i["product_id"] for i in items)
        elif rng.random() < 0.2:
            items = self._basket(c, views[:2])
            self._add_to_cart(c, ids, items)
            if rng.random() < 0.3:
                c.tick()
                self._web_event(
                    c,
                    ids,
                    "remove_from_cart",
                    page_url=f"{SITE}/cart",
                    product_id=items[0]["product_id"],
                    quantity=items[0]["quantity"],
                )

    # --- mobile ------------------------------------------------------------------------------------------

    def _mobile(self, c: Ctx, s: Session) -> None:
        p, st, rng = c.p, c.st, c.rng
        tablet = p.tablet_id is not None and s.campaign is None and (not p.devices or rng.random() < 0.25)
        if p.tablet_id is not None and tablet:
            device, os, di, logged = p.tablet_id, "android", -1, False  # shared: everyone signs in each time
        else:
            di = 0 if s.campaign else rng.randrange(len(p.devices))
            device, os, logged = p.devices[di], p.device_os[di], di in st.devices_in
        version = rng.choice(APP_VERSIONS)
        cust = p.customer_id
        ids = rec.identifiers(device_id=device, customer_id=cust if logged else None)
        if s.campaign is not None:
            # A push token belongs to a signed-in install, so the open carries the customer id.
            ids = rec.identifiers(device_id=device, customer_id=cust)
            env = self._env(c, ids, attribution=self._campaign_attr[s.campaign])
            self._emit(c, "mobile", rec.mobile(env, "push_open", screen_name="push", app_version=version, os=os))
            st.devices_in.add(di)
        else:
            env = self._env(c, ids)
            self._emit(c, "mobile", rec.mobile(env, "app_open", screen_name="home", app_version=version, os=os))
            if not logged:
                c.tick()
                login_ids = rec.identifiers(
                    device_id=device,
                    customer_id=cust,
                    phone=p.phone if not tablet and rng.random() < 0.3 else None,
                    loyalty_id=p.loyalty_id if not tablet and rng.random() < 0.25 else None,
                )
                env = self._env(c, login_ids)
                self._emit(c, "mobile", rec.mobile(env, "login", screen_name="login", app_version=version, os=os))
                ids = rec.identifiers(device_id=device, customer_id=cust)
                if not tablet:
                    st.devices_in.add(di)
        views = self.catalog.pick_products(rng, 1 + min(5, int(rng.expovariate(0.7))))
        for prod in views:
            c.tick(3, 60)
            env = self._env(c, ids)
            self._emit(
                c,
                "mobile",
                rec.mobile(
                    env, "product_view", screen_name="product", app_version=version, os=os, product_id=prod.product_id
                ),
            )
        if s.buy or rng.random() < 0.15:
            items = self._basket(c, views[: rng.randint(1, 2)])
            for item in items:
                c.tick(5, 60)
                env = self._env(c, ids)
                self._emit(
                    c,
                    "mobile",
                    rec.mobile(
                        env,
                        "add_to_cart",
                        screen_name="product",
                        app_version=version,
                        os=os,
                        product_id=item["product_id"],
                        quantity=item["quantity"],
                        unit_price_minor=item["unit_price_minor"],
                        currency=p.currency,
                    ),
                )
            if s.buy:
                st.orders += 1
                c.tick(30, 200)
                env = self._env(c, ids)
                self._emit(
                    c,
                    "mobile",
                    rec.mobile(
                        env,
                        "purchase",
                        screen_name="checkout",
                        app_version=version,
                        os=os,
                        order_id=f"A{p.idx:07d}-{st.orders:03d}",
                        items=items,
                        amount_minor=rec.total(items),
                        currency=p.currency,
                    ),
                )
                st.purchases.extend(i["product_id"] for i in items)
