"""Historical purchases as store ``pos_purchase`` events, so a retailer's history seeds the BTYD statistics.

Guarantees: one event per transaction line, in event-time order; event ids are deterministic (a re-run of the
same file produces the same ids, which ingest's dedup and every idempotent consumer absorb); the key is the
customer id, so a customer's history lands on one partition in order. Each event carries one line item
(``product_id`` = ``backfill``) because ingest requires items on a POS purchase; the receipt total is the
file's amount. Not guaranteed: acceptance by ingest of events older than ``late_horizon_s``: raise
``OMNISTREAM_LATE_HORIZON_S`` on the workers for the backfill of older history.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, time

from pipeline.models.transactions import Transaction
from pipeline.simulate import records
from pipeline.simulate.messages import VALID, SimMessage

BACKFILL_PRODUCT = "backfill"


def event_id(tx: Transaction, source: str) -> str:
    """Deterministic id of one transaction line of one file."""
    digest = hashlib.sha256(f"{source}\x1f{tx.line}\x1f{tx.customer}\x1f{tx.day}\x1f{tx.amount}".encode())
    return "bf-" + digest.hexdigest()[:24]


def backfill_messages(
    transactions: Iterable[Transaction],
    source: str,
    *,
    currency: str = "USD",
    store_id: str = "backfill",
    hour_utc: int = 12,
) -> Iterator[SimMessage]:
    """Store purchase messages for ``transactions`` (sorted by day, then file line)."""
    for tx in sorted(transactions, key=lambda t: (t.day, t.line)):
        when = int(datetime.combine(tx.day, time(hour_utc), tzinfo=UTC).timestamp() * 1000)
        amount = round(tx.amount * 100)
        qty = max(tx.items or 1, 1)
        eid = event_id(tx, source)
        env = records.envelope(eid, when, records.identifiers(customer_id=tx.customer))
        items = records.line_items([(BACKFILL_PRODUCT, qty, amount // qty)])
        record = records.store(
            env, "pos_purchase", store_id, receipt_id=eid, items=items, amount_minor=amount, currency=currency
        )
        yield SimMessage(
            "store",
            tx.customer.encode(),
            VALID,
            "valid",
            when,
            eid,
            tx.customer,
            subject="store",
            version=1,
            record=record,
        )
