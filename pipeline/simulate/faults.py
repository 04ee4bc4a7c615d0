"""Bad input, duplicates and late delivery, injected into the stream of valid events.

Guarantees of :meth:`FaultInjector.apply`:

* Every valid input event is emitted exactly once, either in place (kind ``valid``) or held back and
  released 1-12 hours of event time later (kind ``late``; still expected to be accepted).
* A ``duplicate`` is the very same message object as an earlier emitted ``valid`` one (same event id,
  key and record, hence the same bytes), emitted after it.
* Bad inputs are *extra* messages built from the event just emitted (its channel, key and identifiers)
  with fresh event ids, so injecting them never removes or alters a valid event or its ground truth.
* The shares in :class:`SimConfig` are of the whole output: per valid event the probabilities are
  scaled by ``1 / (1 - bad_share - duplicate_share)``.
* Deterministic: one RNG seeded from the seed, consumed in stream order (the stream order is fixed).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from pipeline.simulate import records as rec
from pipeline.simulate.catalog import Catalog
from pipeline.simulate.config import DAY_MS, HOUR_MS, SimConfig, stable_hash
from pipeline.simulate.messages import DUPLICATE, EXPECTED_OUTCOME, LATE, SimMessage
from pipeline.simulate.population import new_uuid

#: Raw schema ids used for ``unknown_schema``: the top of the 31-bit range. File-registry ids are hashes
#: (8 in use: a chance of ~1e-6 to hit one of these 256) and Confluent registries count up from 1.
UNKNOWN_SCHEMA_ID_BASE = 0x7FFFFF00
OVERSIZED_TEXT_BYTES = 100 * 1024
_PLACEHOLDERS: tuple[str | None, ...] = (None, "undefined", "0", "")
_RECENT = 512


class FaultInjector:
    """Turns the valid event stream into the produced stream (see the module docstring)."""

    def __init__(self, config: SimConfig, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        ordinary = 1.0 - config.bad_share - config.duplicate_share
        self.p_bad = config.bad_share / ordinary
        self.p_dup = config.duplicate_share / ordinary
        self.p_late = config.late_share / ordinary
        self._oversized_text = _filler_text(OVERSIZED_TEXT_BYTES)

    def apply(self, valid: Iterable[SimMessage]) -> Iterator[SimMessage]:
        """The valid stream with late delivery, duplicates and bad inputs mixed in."""
        rng = random.Random(stable_hash(self.config.seed, "faults"))
        held: list[tuple[int, int, SimMessage]] = []
        recent: deque[SimMessage] = deque(maxlen=_RECENT)
        n = 0
        for msg in valid:
            while held and held[0][0] <= msg.event_time_ms:
                yield heapq.heappop(held)[2]
            if rng.random() < self.p_late:
                release = msg.event_time_ms + rng.randint(HOUR_MS, 12 * HOUR_MS)
                heapq.heappush(held, (release, n, replace(msg, kind=LATE)))
                n += 1
            else:
                yield msg
                recent.append(msg)
            if recent and rng.random() < self.p_dup:
                # Half are producer retries of the message just sent, half replays of something older.
                original = recent[-1] if rng.random() < 0.5 else rng.choice(recent)
                yield replace(original, kind=DUPLICATE, expected=EXPECTED_OUTCOME[DUPLICATE], note=None)
            if rng.random() < self.p_bad:
                yield self.bad(rng.choice(self.config.bad_kinds), msg, rng)
        while held:
            yield heapq.heappop(held)[2]

    def bad(self, kind: str, template: SimMessage, rng: random.Random) -> SimMessage:
        """One bad input of ``kind``, derived from the valid message ``template``."""
        assert template.record is not None
        if kind == "garbage":
            body = bytes([rng.randint(1, 255)]) + rng.randbytes(rng.randint(8, 300))
            return _derived(template, kind, event_id=None, subject=None, version=None, record=None, raw=body)
        if kind == "unknown_schema":
            header = b"\x00" + (UNKNOWN_SCHEMA_ID_BASE + rng.randrange(256)).to_bytes(4, "big")
            body = header + rng.randbytes(rng.randint(20, 200))
            return _derived(template, kind, event_id=None, subject=None, version=None, record=None, raw=body)
        event_id = new_uuid(rng)
        env = template.record["envelope"]
        ids = env["identifiers"]
        if kind == "truncated":
            return _derived(template, kind, event_id=event_id, record=_clone(template.record, event_id), truncate=True)
        if kind == "wrong_subject":
            visit_env = rec.envelope(event_id, env["event_time"], ids, None, None)
            record = rec.store(visit_env, "store_visit", self.catalog.stores[0].store_id, visit_method="wifi")
            return _derived(template, kind, channel="web", event_id=event_id, subject="store", version=1, record=record)
        if kind == "no_identifier":
            blank = rec.identifiers(**{name: rng.choice(_PLACEHOLDERS) for name in ids})
            record = _clone(template.record, event_id, identifiers=blank)
            return _derived(template, kind, key=event_id.encode(), event_id=event_id, record=record)
        if kind in ("future_timestamp", "too_old"):
            if kind == "future_timestamp":
                # At least 2 days ahead: still in the future when the pipeline reads it hours later.
                t = self.config.end_ms + rng.randint(2 * DAY_MS, 10 * DAY_MS)
            else:
                t = self.config.end_ms - 730 * DAY_MS - rng.randint(0, 30 * DAY_MS)
            record = _clone(template.record, event_id, event_time=t)
            return _derived(template, kind, event_time_ms=t, event_id=event_id, record=record)
        if kind in ("negative_amount", "unknown_currency"):
            channel, record, version = self._purchase(template, event_id, rng, kind)
            return _derived(
                template, kind, channel=channel, event_id=event_id, subject=channel, version=version, record=record
            )
        if kind == "oversized":
            social_env = rec.envelope(event_id, env["event_time"], ids, None, None)
            record = rec.social(social_env, "mention", "x", text=self._oversized_text, sentiment=0.0)
            return _derived(
                template, kind, channel="social", event_id=event_id, subject="social", version=1, record=record
            )
        raise ValueError(f"unknown bad-input kind {kind!r}")

    def _purchase(
        self, template: SimMessage, event_id: str, rng: random.Random, kind: str
    ) -> tuple[str, dict[str, Any], int]:
        """A purchase on the template's channel (social has none: use the store) with broken money."""
        assert template.record is not None
        env_in = template.record["envelope"]
        env = rec.envelope(event_id, env_in["event_time"], env_in["identifiers"], env_in["consent"], None)
        products = self.catalog.pick_products(rng, rng.randint(1, 3))
        items = rec.line_items([(p.product_id, 1, p.price_minor) for p in dict.fromkeys(products)])
        amount = rec.total(items)
        currency = "EUR"
        if kind == "negative_amount":
            amount = -amount  # a refund booked with the wrong sign
        else:
            currency = "XXY"
        order = f"X{rng.getrandbits(40):010x}"
        if template.channel == "web":
            return (
                "web",
                rec.web(2, env, "purchase", order_id=order, items=items, amount_minor=amount, currency=currency),
                2,
            )
        if template.channel == "mobile":
            return (
                "mobile",
                rec.mobile(env, "purchase", order_id=order, items=items, amount_minor=amount, currency=currency),
                1,
            )
        return (
            "store",
            rec.store(
                env,
                "pos_purchase",
                self.catalog.stores[0].store_id,
                receipt_id=order,
                items=items,
                amount_minor=amount,
                currency=currency,
            ),
            1,
        )


def _derived(template: SimMessage, kind: str, **changes: Any) -> SimMessage:
    return replace(template, kind=kind, expected=EXPECTED_OUTCOME[kind], note=None, **changes)


def _clone(
    record: Any, event_id: str, *, event_time: int | None = None, identifiers: dict[str, str | None] | None = None
) -> dict[str, Any]:
    """A copy of ``record`` with a new envelope (the original and its nested dicts stay untouched)."""
    env = dict(record["envelope"])
    env["event_id"] = event_id
    if event_time is not None:
        env["event_time"] = event_time
    if identifiers is not None:
        env["identifiers"] = identifiers
    out = dict(record)
    out["envelope"] = env
    return out


def _filler_text(size: int) -> str:
    """ASCII prose of exactly ``size`` bytes (a pasted article, the kind of post that blows size limits)."""
    sentence = "this is a very long post about the new collection and the store experience. "
    return (sentence * (size // len(sentence) + 1))[:size]
