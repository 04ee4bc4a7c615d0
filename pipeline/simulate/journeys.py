"""Turning each person's session plan into channel events, merged into one event-time-ordered stream.

Guarantees of :meth:`JourneyEngine.events`:

* Output is sorted by ``(event_time, person index, per-person sequence)``: a total order that depends on
  each person's own data only, so the stream is identical for a seed however it is consumed.
* Session ``k`` of person ``i`` draws from an RNG seeded by ``(seed, i, k)``; adding people or sessions
  elsewhere never changes what person ``i`` does.
* Every event is valid for ingest: at least one real identifier, money with a currency, the fields each
  event type needs. Events only carry identifiers of their own person, plus shared device ids: a store
  kiosk's events always come with the customer id of whoever signed in; on a family tablet only the
  ``app_open`` before each sign-in carries the tablet id alone.
* The store visit of an abandoned-cart journey carries a ``note`` (ground truth, never sent).

Memory stays bounded by the number of people: only each person's next session and the events of
sessions already expanded but not yet due are held, never the whole timeline.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator

from pipeline.simulate.catalog import Catalog
from pipeline.simulate.config import SimConfig, stable_hash
from pipeline.simulate.messages import SimMessage
from pipeline.simulate.population import Person, Session
from pipeline.simulate.sessionkit import JOURNEY_OPEN_CART, Ctx, State
from pipeline.simulate.store_social import StoreSocialSessions
from pipeline.simulate.web_app import WebAppSessions

__all__ = ["JOURNEY_OPEN_CART", "JourneyEngine"]


class JourneyEngine(WebAppSessions, StoreSocialSessions):
    """Expands the population's plans into events (see the module docstring for the guarantees)."""

    def __init__(self, config: SimConfig, catalog: Catalog, population: tuple[Person, ...]) -> None:
        super().__init__(config, catalog)
        self.population = population

    def events(self) -> Iterator[SimMessage]:
        """All valid events of all people in event-time order."""
        # Heap items: (time, person index, per-person seq, payload); payload is an event or a session number.
        heap: list[tuple[int, int, int, SimMessage | int]] = [
            (p.plan[0].t_ms, p.idx, 0, 0) for p in self.population if p.plan
        ]
        heapq.heapify(heap)
        states: dict[int, State] = {}
        seed = self.config.seed
        while heap:
            _, idx, _, payload = heapq.heappop(heap)
            if isinstance(payload, SimMessage):
                yield payload
                continue
            p = self.population[idx]
            st = states.get(idx)
            if st is None:
                st = states[idx] = State(p)
            session = p.plan[payload]
            ctx = Ctx(p, st, random.Random(stable_hash(seed, "session", idx, payload)), session.t_ms)
            self._expand(ctx, session)
            for msg in ctx.out:
                # A session running into churn (or the end of the timeline) is cut there: nothing after it.
                if msg.event_time_ms < p.active_end_ms:
                    heapq.heappush(heap, (msg.event_time_ms, idx, st.seq, msg))
                    st.seq += 1
            if payload + 1 < len(p.plan):
                heapq.heappush(heap, (p.plan[payload + 1].t_ms, idx, st.seq, payload + 1))
                st.seq += 1
            else:
                del states[idx]  # pending events keep their own data; the state is no longer needed

    # --- dispatch ------------------------------------------------------------------------------------

    def _expand(self, c: Ctx, s: Session) -> None:
        if s.visit_ms:
            self._cart_journey(c, s)
        elif s.channel == "web":
            self._web(c, s)
        elif s.channel == "mobile":
            self._mobile(c, s)
        elif s.channel == "store":
            self._store(c, s.buy)
        else:
            self._social(c)

    def _cart_journey(self, c: Ctx, s: Session) -> None:
        """Logged-in night-time cart left open online, then bought in a store within 48 hours."""
        ids, views = self._web_session_start(c, None, force_login=True, link_all=True)
        products = [*views[: c.rng.randint(1, 3)]]
        items = self._basket(c, products)
        carts = self._add_to_cart(c, ids, items)
        c.t = s.visit_ms
        self._store(c, True, journey_cart=(items, carts))
