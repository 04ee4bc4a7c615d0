"""Synthetic output records of the pipeline (sessions, transitions, signals, profiles, merges, failed events).

Used by the sink tests, the throughput benchmark and the report tests when they need warehouse rows without
running the whole pipeline. Every record is a valid instance of the latest version of its Avro subject, in
the decoded shape the codec returns (timestamps as epoch milliseconds, dates as days since the epoch).
Deterministic for a given ``random.Random``. Not a model of real behaviour: the simulator (``omnistream
simulate``) and the worker produce the realistic data.
"""

from __future__ import annotations

import random
from typing import Any

DAY_MS = 86_400_000
CHANNELS = ("web", "mobile", "store", "social")
STAGES = ("visitor", "engaged", "first_purchase", "repeat", "loyal", "at_risk", "churned")


def session(
    rng: random.Random,
    session_id: str,
    customer_id: str,
    start_ms: int,
    *,
    version: int = 1,
    status: str = "closed",
    merged_into: str | None = None,
    channels: list[str] | None = None,
    bought: list[str] | None = None,
    carted: list[str] | None = None,
    campaign_ids: list[str] | None = None,
) -> dict[str, Any]:
    """One session version (``channels`` in time order; revenue follows ``bought``)."""
    chans = channels or [rng.choice(CHANNELS)]
    bought = bought if bought is not None else []
    carted = carted if carted is not None else []
    campaigns = campaign_ids or []
    duration = rng.randrange(60, 3600)
    return {
        "session_id": session_id,
        "customer_id": customer_id,
        "start_ms": start_ms,
        "end_ms": start_ms + duration * 1000,
        "duration_s": duration,
        "channel_path": ">".join(chans),
        "channels": sorted(set(chans)),
        "event_count": 1 + len(bought) + len(carted),
        "counts_by_type": {"page_view": 1, "add_to_cart": len(carted), "purchase": 1 if bought else 0},
        "products_viewed": sorted(set(carted + bought)),
        "products_carted": carted,
        "products_bought": bought,
        "cart_value_minor": 0,
        "revenue_minor": 1999 * len(bought),
        "currency": "EUR" if bought else None,
        "store_ids": ["s-1"] if "store" in chans else [],
        "avg_sentiment": None,
        "first_campaign_id": campaigns[0] if campaigns else None,
        "campaign_ids": campaigns,
        "bot_suspect": False,
        "status": status,
        "merged_into": merged_into,
        "version": version,
    }


def transition(customer_id: str, seq: int, from_stage: str | None, to_stage: str, event_ms: int) -> dict[str, Any]:
    """One journey-stage transition (``transition_id`` is deterministic in customer and seq)."""
    return {
        "transition_id": f"t:{customer_id}:{seq}",
        "customer_id": customer_id,
        "seq": seq,
        "from_stage": from_stage,
        "to_stage": to_stage,
        "reason": f"guard {to_stage}",
        "evidence_event_ids": [f"e:{customer_id}:{seq}"],
        "event_time": event_ms,
        "machine_version": "test-1",
    }


def signal(
    signal_id: str,
    customer_id: str,
    signal_type: str,
    event_ms: int,
    *,
    holdout: bool = False,
    campaign_id: str | None = None,
    score: float | None = None,
    reason: str = "test reason",
) -> dict[str, Any]:
    """One signal."""
    return {
        "signal_id": signal_id,
        "customer_id": customer_id,
        "signal_type": signal_type,
        "event_time": event_ms,
        "emitted_at": event_ms + 1000,
        "reason": reason,
        "evidence_event_ids": [],
        "product_ids": [],
        "channel": None,
        "store_id": None,
        "campaign_id": campaign_id,
        "holdout": holdout,
        "score": score,
        "details": {"source": "synthetic"},
    }


def profile(customer_id: str, version: int, updated_ms: int, *, stage: str = "engaged", **extra: Any) -> dict[str, Any]:
    """One customer-profile version; ``extra`` overrides any field."""
    record: dict[str, Any] = {
        "customer_id": customer_id,
        "version": version,
        "updated_at": updated_ms,
        "stage": stage,
        "rfm_segment": None,
        "channels": ["web"],
        "marketing_consent": True,
        "first_purchase_day": None,
        "last_purchase_day": None,
        "purchase_days": 0,
        "revenue_minor": 0,
        "currency": None,
        "p_alive": None,
        "expected_purchases_90d": None,
        "clv_minor": None,
        "model_version": None,
        "churn_risk": False,
    }
    record.update(extra)
    return record


def merge(old_id: str, new_id: str, event_ms: int) -> dict[str, Any]:
    """One identity merge ``old_id -> new_id``."""
    return {
        "old_id": old_id,
        "new_id": new_id,
        "rule": "web_login",
        "event_id": f"e:merge:{old_id}",
        "event_time": event_ms,
        "reason": "profile_joined",
    }


def failed(source_offset: int, failure_type: str = "validation_error", *, topic: str = "web") -> dict[str, Any]:
    """One failed-event envelope (the sealed original is a placeholder string)."""
    return {
        "failure_type": failure_type,
        "rule": "no_identifier",
        "reason": "synthetic failure",
        "event_id": None,
        "schema_id": None,
        "source_topic": topic,
        "source_partition": 0,
        "source_offset": source_offset,
        "source_key_sealed": None,
        "original_sealed": "sealed",
        "processor": "ingest/test",
        "failed_at": 1_700_000_000_000 + source_offset,
    }


PRODUCTS = tuple(f"p-{i:03d}" for i in range(40))
PATHS = (
    ["web"],
    ["mobile"],
    ["store"],
    ["web", "store"],
    ["mobile", "web"],
    ["web", "mobile", "store"],
    ["social", "web"],
)
SIGNAL_TYPES = ("cart_abandoned", "churn_risk", "win_back", "campaign_no_follow_up")


def world(
    rng: random.Random, customers: int, days: int = 21, start_ms: int = 1_700_006_400_000
) -> dict[str, list[dict[str, Any]]]:
    """A small consistent warehouse: per customer sessions over ``days`` (some cross-channel, some bought
    together from a popular pair), stage transitions, signals with a ~20% holdout, the current profile, and
    a few identity merges and failed events. Records keyed by table name."""
    out: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("sessions", "journey_transitions", "signals", "customers", "identity_merges", "failed_events")
    }
    for c in range(customers):
        cid = f"c:{c}"
        bought_days: set[int] = set()
        revenue = 0
        for s in range(rng.randint(1, 6)):
            day = rng.randrange(days)
            path = rng.choice(PATHS)
            carted = rng.sample(PRODUCTS[:12], rng.randint(0, 2))
            if rng.random() < 0.3:
                carted += ["p-000", "p-001"]  # a strong pair: lift well above 1
            bought = [p for p in carted if rng.random() < 0.5]
            campaigns = ["spring-push"] if rng.random() < 0.2 else []
            rec = session(
                rng,
                f"s:{c}:{s}",
                cid,
                start_ms + day * DAY_MS + rng.randrange(DAY_MS // 2),
                channels=path,
                carted=sorted(set(carted)),
                bought=sorted(set(bought)),
                campaign_ids=campaigns,
                version=rng.randint(1, 2),
            )
            out["sessions"].append(rec)
            if bought:
                bought_days.add(day)
                revenue += rec["revenue_minor"]
        stages = (
            ["visitor", "engaged"]
            + (["first_purchase"] if bought_days else [])
            + (["repeat"] if len(bought_days) > 1 else [])
        )
        if rng.random() < 0.25:
            stages.append("at_risk")
        for seq, stage in enumerate(stages, start=1):
            out["journey_transitions"].append(
                transition(cid, seq, stages[seq - 2] if seq > 1 else None, stage, start_ms + (seq - 1) * 3 * DAY_MS)
            )
        p_alive = round(rng.uniform(0.05, 0.99), 3)
        for n in range(rng.randint(0, 2)):
            kind = rng.choice(SIGNAL_TYPES)
            out["signals"].append(
                signal(
                    f"g:{c}:{n}",
                    cid,
                    kind,
                    start_ms + rng.randrange(days) * DAY_MS,
                    holdout=rng.random() < 0.2,
                    score=p_alive if kind == "churn_risk" else None,
                    reason=f"{kind.replace('_', ' ')}: synthetic evidence",
                )
            )
        out["customers"].append(
            profile(
                cid,
                len(stages),
                start_ms + days * DAY_MS,
                stage=stages[-1],
                rfm_segment=rng.choice(("champions", "loyal", "at_risk", "hibernating", "new")),
                channels=["web", "store"],
                purchase_days=len(bought_days),
                revenue_minor=revenue,
                currency="EUR",
                p_alive=p_alive,
                clv_minor=round(revenue * p_alive * 2.5, 2),
                churn_risk="at_risk" in stages,
            )
        )
        if c % 25 == 3:
            out["identity_merges"].append(merge(f"p:anon{c}", cid, start_ms))
        if c % 10 == 0:
            out["failed_events"].append(failed(c, rng.choice(("validation_error", "late_event", "decode_error"))))
    return out
