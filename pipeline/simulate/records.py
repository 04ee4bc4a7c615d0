"""Record builders, one per input subject, producing dicts shaped exactly like the Avro contracts.

Guarantees: every builder returns every field of its schema version (no reliance on writer defaults),
``web`` v1 records have no ``referrer`` (v1 has no such field), money comes with a currency, and event
times are ints (epoch ms, as the codec accepts for ``timestamp-millis``). Values are not validated here:
the fault injector deliberately builds invalid ones with the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Record = dict[str, Any]
LineItem = dict[str, Any]


def identifiers(
    *,
    anonymous_id: str | None = None,
    device_id: str | None = None,
    customer_id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    loyalty_id: str | None = None,
    social_handle: str | None = None,
) -> dict[str, str | None]:
    """An ``omnistream.common.Identifiers`` record."""
    return {
        "anonymous_id": anonymous_id,
        "device_id": device_id,
        "customer_id": customer_id,
        "email": email,
        "phone": phone,
        "loyalty_id": loyalty_id,
        "social_handle": social_handle,
    }


def envelope(
    event_id: str,
    event_time: int,
    ids: Mapping[str, str | None],
    consent: Mapping[str, bool | None] | None = None,
    attribution: Mapping[str, str | None] | None = None,
) -> Record:
    """An ``omnistream.common.Envelope`` record."""
    return {
        "event_id": event_id,
        "event_time": event_time,
        "identifiers": ids,
        "consent": consent,
        "attribution": attribution,
    }


def line_items(products: Sequence[tuple[str, int, int]]) -> list[LineItem]:
    """LineItem records from ``(product_id, quantity, unit_price_minor)`` triples."""
    return [{"product_id": p, "quantity": q, "unit_price_minor": u} for p, q, u in products]


def total(items: Sequence[LineItem]) -> int:
    """Sum of quantity x unit price."""
    return sum(int(i["quantity"]) * int(i["unit_price_minor"]) for i in items)


def web(
    version: int,
    env: Record,
    event_type: str,
    *,
    page_url: str | None = None,
    referrer: str | None = None,
    product_id: str | None = None,
    quantity: int | None = None,
    unit_price_minor: int | None = None,
    search_query: str | None = None,
    order_id: str | None = None,
    items: list[LineItem] | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
) -> Record:
    """A ``web`` record of schema ``version`` (1 or 2)."""
    record: Record = {"envelope": env, "event_type": event_type, "page_url": page_url}
    if version >= 2:
        record["referrer"] = referrer
    record.update(
        product_id=product_id,
        quantity=quantity,
        unit_price_minor=unit_price_minor,
        search_query=search_query,
        order_id=order_id,
        items=items or [],
        amount_minor=amount_minor,
        currency=currency,
    )
    return record


def mobile(
    env: Record,
    event_type: str,
    *,
    screen_name: str | None = None,
    app_version: str | None = None,
    os: str | None = None,
    product_id: str | None = None,
    quantity: int | None = None,
    unit_price_minor: int | None = None,
    order_id: str | None = None,
    items: list[LineItem] | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
    store_id: str | None = None,
) -> Record:
    """A ``mobile`` v1 record."""
    return {
        "envelope": env,
        "event_type": event_type,
        "screen_name": screen_name,
        "app_version": app_version,
        "os": os,
        "product_id": product_id,
        "quantity": quantity,
        "unit_price_minor": unit_price_minor,
        "order_id": order_id,
        "items": items or [],
        "amount_minor": amount_minor,
        "currency": currency,
        "store_id": store_id,
    }


def store(
    env: Record,
    event_type: str,
    store_id: str,
    *,
    visit_method: str | None = None,
    receipt_id: str | None = None,
    original_receipt_id: str | None = None,
    items: list[LineItem] | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
) -> Record:
    """A ``store`` v1 record."""
    return {
        "envelope": env,
        "event_type": event_type,
        "store_id": store_id,
        "visit_method": visit_method,
        "receipt_id": receipt_id,
        "original_receipt_id": original_receipt_id,
        "items": items or [],
        "amount_minor": amount_minor,
        "currency": currency,
    }


def social(
    env: Record,
    event_type: str,
    platform: str,
    *,
    text: str | None = None,
    rating: int | None = None,
    sentiment: float | None = None,
    product_id: str | None = None,
) -> Record:
    """A ``social`` v1 record."""
    return {
        "envelope": env,
        "event_type": event_type,
        "platform": platform,
        "text": text,
        "rating": rating,
        "sentiment": sentiment,
        "product_id": product_id,
    }
