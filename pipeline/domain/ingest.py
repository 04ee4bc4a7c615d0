"""Per-event ingest: validate a decoded channel record and turn it into a canonical CustomerEvent.

Pure and synchronous: no IO, no clock (``now_ms`` is passed in), no globals besides read-only tables.
It runs once per input event, so it avoids per-event object models and builds the output dict directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pycountry

from pipeline.domain.identifiers import identifier_problem
from pipeline.domain.pii import Pseudonymiser, clean_identifier
from pipeline.domain.records import CustomerEventRecord, FailureType, LineItemRecord, Rejection, SourceRef
from pipeline.settings import CHANNELS

if TYPE_CHECKING:
    from pipeline.settings import Settings

_VALIDATION = FailureType.VALIDATION_ERROR
_NEEDS_PRODUCT = frozenset({"product_view", "add_to_cart", "remove_from_cart"})
_NEEDS_STORE = frozenset({"store_visit", "store_geofence_enter"})
_CHANNELS = frozenset(CHANNELS)
# XXX ("no currency") and XTS ("testing") are ISO codes, but money tagged with them is not real money.
_NOT_MONEY = frozenset({"XXX", "XTS"})
_ABSENT: dict[str, Any] = {}  # stands in for a null consent/attribution record; never mutated


@dataclass(frozen=True)
class IngestPolicy:
    """Limits applied to every input event (all in milliseconds or bytes)."""

    max_future_skew_ms: int
    late_horizon_ms: int
    max_event_bytes: int
    #: a failed event keeps a larger original by reference only (it must fit the broker's message limit)
    failed_original_max_bytes: int = 262_144

    def __post_init__(self) -> None:
        if (self.max_future_skew_ms < 0 or self.late_horizon_ms <= 0 or self.max_event_bytes <= 0
                or self.failed_original_max_bytes < 0):  # fmt: skip
            raise ValueError(f"invalid ingest policy: {self}")

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestPolicy:
        """Policy from the process settings (seconds there, milliseconds here)."""
        return cls(
            max_future_skew_ms=round(settings.max_future_skew_s * 1000),
            late_horizon_ms=round(settings.late_horizon_s * 1000),
            max_event_bytes=settings.max_event_bytes,
            failed_original_max_bytes=settings.failed_original_max_bytes,
        )


#: Bounds that keep every sum of money in Avro's long (2**63 - 1): an event's money (its amount, and every line's
#: unit price x quantity, and their total) is at most MAX_EVENT_MINOR (10**11 minor units: a billion in a
#: two-decimal currency), so a session, a customer's lifetime or a day's channel revenue overflows only beyond
#: 92 million events of the maximum. A quantity above MAX_QUANTITY per line is a typo or an attack.
MAX_EVENT_MINOR = 10**11
MAX_QUANTITY = 10_000


def money_problem(
    amount_minor: int | None, unit_price_minor: int | None, quantity: int | None, items: list[dict[str, Any]]
) -> tuple[str, str] | None:
    """(rule, reason) when a quantity or an amount of an event is out of range (see MAX_EVENT_MINOR)."""
    quantities = [q for q in (quantity, *(item["quantity"] for item in items)) if q is not None]
    if any(q > MAX_QUANTITY for q in quantities):
        return "invalid_quantity", f"a quantity of {max(quantities)} > {MAX_QUANTITY}"
    lines = [item["unit_price_minor"] * item["quantity"] for item in items]
    if unit_price_minor is not None:
        lines.append(unit_price_minor * (quantity or 1))
    total = max(amount_minor or 0, sum(lines), *lines) if lines else (amount_minor or 0)
    if total > MAX_EVENT_MINOR:
        return "amount_out_of_range", f"money of {total} minor units > {MAX_EVENT_MINOR}"
    return None


@lru_cache(maxsize=1)
def known_currencies() -> frozenset[str]:
    """Upper-case ISO 4217 alpha-3 codes usable for money, read once from ``pycountry``."""
    return frozenset(c.alpha_3 for c in pycountry.currencies) - _NOT_MONEY


def size_check(value: bytes | None, policy: IngestPolicy) -> Rejection | None:
    """Reject a message without a value (a null record, e.g. a tombstone) or larger than
    ``policy.max_event_bytes`` before anything decodes it."""
    if value is None:
        return Rejection(FailureType.DECODE_ERROR, "null_value", "the message has no value (null)")
    size = len(value)
    if size > policy.max_event_bytes:
        return Rejection(FailureType.SIZE_VIOLATION, "too_large", f"{size} bytes > limit {policy.max_event_bytes}")
    return None


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _handle(value: str | None) -> str | None:
    # Handles are case-insensitive on the big platforms and are written with or without "@".
    handle = clean_identifier(value)
    if handle is None:
        return None
    return clean_identifier(handle.lstrip("@").lower())


_EMAIL_LIKE = re.compile(r"[^\s@]+@[^\s@]+")
_DIGIT_RUN = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def _scrub_query(query: str) -> str:
    """Search boxes receive pasted e-mail addresses and phone numbers: mask them so raw PII never leaves."""
    return _DIGIT_RUN.sub("[number]", _EMAIL_LIKE.sub("[email]", query))


def _page_path(url: str | None) -> str | None:
    # Only the path travels on: query strings and fragments carry e-mails, tokens and campaign noise.
    url = _text(url)
    if url is None:
        return None
    try:
        return urlsplit(url).path or "/"
    except ValueError:
        return None


def canonicalise(
    channel: str,
    record: dict[str, Any],
    source: SourceRef,
    now_ms: int,
    policy: IngestPolicy,
    pseudonymiser: Pseudonymiser,
) -> CustomerEventRecord | Rejection:
    """Validate one decoded channel record and return the canonical event, or the first rule it breaks.

    Rules, checked in this order: non-empty event_id; at least one real identifier after placeholders
    are dropped and email/phone are pseudonymised, each of a valid shape (:mod:`pipeline.domain.identifiers`);
    event_time within [now - late_horizon, now + max_future_skew]; amounts >= 0; quantities >= 1; quantities and
    money within the bounds that keep every sum in range (:func:`money_problem`); a known currency whenever
    money is present (and whenever a currency is given); the fields each event type needs; rating in 1..5 and
    sentiment in [-1, 1] when present. Raw email, phone and social post text never reach the output.

    ``order_id`` is the web/app order id or the store receipt id; for a store ``return`` it is the
    *original* receipt id when known (falling back to the return's own receipt id), so a return points
    at the purchase it reverses and net revenue per order can be computed downstream.

    Raises ValueError only for a programming error (unknown channel); bad data is a ``Rejection``.
    """
    if channel not in _CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    env = record["envelope"]
    event_id: str = env["event_id"]
    schema_id = source.schema_id
    if not event_id or event_id.isspace():
        return Rejection(_VALIDATION, "missing_field", "event_id is empty", None, schema_id)

    ids = env["identifiers"]
    problem = identifier_problem(ids)
    if problem is not None:
        return Rejection(_VALIDATION, "invalid_identifier", problem, event_id, schema_id)
    anonymous_id = clean_identifier(ids.get("anonymous_id"))
    device_id = clean_identifier(ids.get("device_id"))
    customer_id = clean_identifier(ids.get("customer_id"))
    loyalty_id = clean_identifier(ids.get("loyalty_id"))
    social_handle = _handle(ids.get("social_handle"))
    email_hash = pseudonymiser.email(ids.get("email"))
    phone_hash = pseudonymiser.phone(ids.get("phone"))
    if not (anonymous_id or device_id or customer_id or loyalty_id or social_handle or email_hash or phone_hash):
        reason = "no usable identifier after dropping placeholders"
        return Rejection(_VALIDATION, "no_identifier", reason, event_id, schema_id)

    event_time: int = env["event_time"]
    if event_time > now_ms + policy.max_future_skew_ms:
        return Rejection(
            _VALIDATION, "future_timestamp",
            # The reason names no processing time: the same input gives the same failed-event row.
            f"event_time {event_time} is more than {policy.max_future_skew_ms} ms ahead of the clock at ingest",
            event_id, schema_id,
        )  # fmt: skip
    if event_time < now_ms - policy.late_horizon_ms:
        return Rejection(
            FailureType.LATE_EVENT, "older_than_horizon",
            f"event_time {event_time} is older than the horizon of {policy.late_horizon_ms} ms before ingest",
            event_id, schema_id,
        )  # fmt: skip

    get = record.get
    amount_minor: int | None = get("amount_minor")
    unit_price_minor: int | None = get("unit_price_minor")
    quantity: int | None = get("quantity")
    items_in: list[dict[str, Any]] = get("items") or []
    if (amount_minor is not None and amount_minor < 0) or (unit_price_minor is not None and unit_price_minor < 0):
        reason = f"amount_minor {amount_minor} / unit_price_minor {unit_price_minor}: money must be >= 0"
        return Rejection(_VALIDATION, "negative_amount", reason, event_id, schema_id)
    for item in items_in:
        if item["unit_price_minor"] < 0:
            reason = f"line item {item['product_id']!r} has unit_price_minor < 0"
            return Rejection(_VALIDATION, "negative_amount", reason, event_id, schema_id)
    if quantity is not None and quantity < 1:
        return Rejection(_VALIDATION, "invalid_quantity", f"quantity {quantity} < 1", event_id, schema_id)
    for item in items_in:
        if item["quantity"] < 1:
            reason = f"line item {item['product_id']!r} has quantity {item['quantity']} < 1"
            return Rejection(_VALIDATION, "invalid_quantity", reason, event_id, schema_id)

    out_of_range = money_problem(amount_minor, unit_price_minor, quantity, items_in)
    if out_of_range is not None:
        return Rejection(_VALIDATION, out_of_range[0], out_of_range[1], event_id, schema_id)

    currency = _text(get("currency"))
    if currency is not None:
        currency = currency.upper()
        if currency not in known_currencies():
            reason = f"currency {currency!r} is not a known ISO 4217 code"
            return Rejection(_VALIDATION, "unknown_currency", reason, event_id, schema_id)
    elif amount_minor is not None or unit_price_minor is not None or items_in:
        reason = "amounts are present but currency is missing"
        return Rejection(_VALIDATION, "missing_currency", reason, event_id, schema_id)

    event_type: str = record["event_type"]
    product_id = _text(get("product_id"))
    store_id = _text(get("store_id"))
    search_query = _text(get("search_query"))
    order_id = _text(get("order_id"))
    rating: int | None = get("rating")
    sentiment: float | None = get("sentiment")
    missing: str | None = None
    if event_type in _NEEDS_PRODUCT:
        missing = None if product_id else "product_id"
    elif event_type == "purchase":
        if not order_id:
            missing = "order_id"
        elif not items_in and amount_minor is None:
            missing = "items or amount_minor"
    elif event_type == "pos_purchase":
        if not items_in:
            missing = "items"
        elif amount_minor is None:
            missing = "amount_minor"
    elif event_type in _NEEDS_STORE:
        missing = None if store_id else "store_id"
    elif event_type == "search":
        missing = None if search_query else "search_query"
    elif event_type == "review":
        missing = None if rating is not None else "rating"
    if missing is not None:
        return Rejection(_VALIDATION, "missing_field", f"{event_type} needs {missing}", event_id, schema_id)
    if rating is not None and not 1 <= rating <= 5:
        return Rejection(_VALIDATION, "invalid_rating", f"rating {rating} not in 1..5", event_id, schema_id)
    # Written as "not inside" so that NaN is rejected too.
    if sentiment is not None and not -1.0 <= sentiment <= 1.0:
        reason = f"sentiment {sentiment} not in [-1, 1]"
        return Rejection(_VALIDATION, "invalid_sentiment", reason, event_id, schema_id)

    visit_method: str | None = None
    page: str | None = None
    if channel == "web":
        page = _page_path(get("page_url"))
    elif channel == "mobile":
        page = _text(get("screen_name"))
        if event_type == "store_geofence_enter":
            visit_method = "geofence"
    elif channel == "store":
        visit_method = get("visit_method")
        receipt_id = _text(get("receipt_id"))
        order_id = (_text(get("original_receipt_id")) or receipt_id) if event_type == "return" else receipt_id
    platform = _text(get("platform"))
    consent = env.get("consent") or _ABSENT
    attribution = env.get("attribution") or _ABSENT
    items: list[LineItemRecord] = [
        {"product_id": i["product_id"], "quantity": i["quantity"], "unit_price_minor": i["unit_price_minor"]}
        for i in items_in
    ]
    return {
        "event_id": event_id,
        "event_time": event_time,
        "ingested_at": now_ms,
        "channel": channel,
        "event_type": event_type,
        "anonymous_id": anonymous_id,
        "device_id": device_id,
        "customer_id": customer_id,
        "email_hash": email_hash,
        "phone_hash": phone_hash,
        "loyalty_id": loyalty_id,
        "social_handle": social_handle,
        "consent_marketing": consent.get("marketing"),
        "consent_analytics": consent.get("analytics"),
        "campaign_id": attribution.get("campaign_id"),
        "utm_source": attribution.get("utm_source"),
        "utm_medium": attribution.get("utm_medium"),
        "utm_campaign": attribution.get("utm_campaign"),
        "product_id": product_id,
        "quantity": quantity,
        "unit_price_minor": unit_price_minor,
        "items": items,
        "amount_minor": amount_minor,
        "currency": currency,
        "order_id": order_id,
        "store_id": store_id,
        "visit_method": visit_method,
        "page": page,
        "search_query": _scrub_query(search_query.lower()) if search_query else None,
        "platform": platform.lower() if platform else None,
        "rating": rating,
        "sentiment": sentiment,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "schema_id": schema_id,
    }
