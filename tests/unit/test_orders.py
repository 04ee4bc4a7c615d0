"""Order lines: a purchase as one row per line whose amounts always sum to the purchase total."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.orders import allocate, order_lines
from pipeline.steps.journey_profile import event_money


@given(st.integers(-(10**12), 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=20))
def test_allocation_sums_to_the_total_and_follows_the_weights(total: int, weights: list[int]) -> None:
    parts = allocate(total, weights)
    assert sum(parts) == total and len(parts) == len(weights)
    if total >= 0 and sum(weights) > 0:
        base = sum(weights)
        assert all(p >= total * w // base for p, w in zip(parts[:-1], weights[:-1], strict=True))
        assert all(p >= 0 for p in parts)


def purchase(**fields: Any) -> dict[str, Any]:
    base = {"event_id": "e1", "event_time": 1_700_000_000_000, "channel": "store", "store_id": "S1", "order_id": "R1",
            "currency": "EUR", "items": [], "amount_minor": None, "quantity": None, "unit_price_minor": None,
            "product_id": None}  # fmt: skip
    return {**base, **fields}


items = st.lists(st.fixed_dictionaries({"product_id": st.sampled_from(["a", "b", "c"]), "quantity": st.integers(1, 9),
                                        "unit_price_minor": st.integers(0, 10**6)}), max_size=6)  # fmt: skip


@given(items, st.one_of(st.none(), st.integers(0, 10**8)))
def test_the_lines_of_a_purchase_sum_to_its_total(lines: list[dict[str, Any]], amount: int | None) -> None:
    ev = purchase(items=lines, amount_minor=amount, product_id="p", quantity=2, unit_price_minor=150)
    total = event_money(ev)  # type: ignore[arg-type]
    rows = order_lines(ev, "c:1", total)
    assert sum(r["amount_minor"] for r in rows) == total
    assert len({r["line_id"] for r in rows}) == len(rows) == max(len(lines), 1)
    assert all(r["customer_id"] == "c:1" and r["currency"] == "EUR" for r in rows)
    if lines:
        assert [r["list_amount_minor"] for r in rows] == [i["quantity"] * i["unit_price_minor"] for i in lines]


def test_a_discounted_order_spreads_the_discount_over_its_lines() -> None:
    ev = purchase(items=[{"product_id": "a", "quantity": 1, "unit_price_minor": 3000},
                         {"product_id": "b", "quantity": 2, "unit_price_minor": 1000}], amount_minor=4500)  # fmt: skip
    rows = order_lines(ev, "c:1", 4500)
    assert [(r["product_id"], r["list_amount_minor"], r["amount_minor"]) for r in rows] == [
        ("a", 3000, 2700), ("b", 2000, 1800)]  # fmt: skip
