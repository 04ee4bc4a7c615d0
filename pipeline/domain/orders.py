"""Order lines: a purchase event as one row per purchased line, for per-product revenue.

Pure. The lines of a purchase always sum to the purchase's total (:func:`~pipeline.steps.journey_profile.
event_money`, the figure revenue and the models use): an event's ``amount_minor`` may differ from the sum of its
items' list values (discounts, tax, rounding), so the total is allocated in proportion to the list values
(largest remainder on the last line). A purchase without items is one line without a product.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def allocate(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` (equal shares when they sum to 0); the parts sum to ``total``."""
    if not weights:
        return []
    base = sum(weights)
    if base <= 0:
        weights, base = [1] * len(weights), len(weights)
    parts = [total * w // base for w in weights]
    parts[-1] += total - sum(parts)
    return parts


def order_lines(ev: Mapping[str, Any], customer: str, total: int) -> list[dict[str, Any]]:
    """The order-line records of purchase ``ev`` applied to ``customer`` whose total is ``total`` (minor units)."""
    items = ev.get("items") or []
    if items:
        lines = [(i["product_id"], int(i["quantity"]), int(i["quantity"]) * int(i["unit_price_minor"])) for i in items]
    else:
        quantity = int(ev.get("quantity") or 1)
        lines = [(ev.get("product_id"), quantity, total)]
    shares = allocate(total, [value for _p, _q, value in lines])
    order_id = ev.get("order_id")
    out = []
    for n, ((product, quantity, value), share) in enumerate(zip(lines, shares, strict=True)):
        line = {"line_id": f"{ev['event_id']}/{n}", "event_id": ev["event_id"], "order_id": order_id,
                "customer_id": customer, "event_time": ev["event_time"], "channel": ev["channel"],
                "store_id": ev.get("store_id"), "product_id": product, "quantity": quantity,
                "list_amount_minor": value, "amount_minor": share, "currency": ev.get("currency")}  # fmt: skip
        out.append(line)
    return out
