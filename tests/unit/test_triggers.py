"""Next-best-action triggers and their governance; the scripted journey through the journey profile step."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.domain import triggers
from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.triggers import HOUR_MS, Candidate, TriggerPolicy, TriggerState, govern, in_holdout, on_event
from pipeline.metrics_journey import journey_signal_metrics
from pipeline.steps.journey_profile import JourneyProfile
from pipeline.steps.journey_signals import JourneySignals, SignalsConfig, SignalsOutput
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry

T0 = 1_750_000_000_000 - 1_750_000_000_000 % (24 * HOUR_MS) + 23 * HOUR_MS  # 23:00 UTC
POLICY = TriggerPolicy(holdout_share=0.0)
_n = 0


def ev(event_type: str, t: int, channel: str = "web", **kw: Any) -> CustomerEventRecord:
    global _n
    _n += 1
    base: dict[str, Any] = {k: None for k in CustomerEventRecord.__annotations__}
    base.update(
        event_id=f"e{_n}",
        event_time=t,
        ingested_at=t,
        channel=channel,
        event_type=event_type,
        items=[],
        customer_id="C1",
        source_topic="x",
        source_partition=0,
        source_offset=_n,
        schema_id=1,
    )
    base.update(kw)
    return base  # type: ignore[return-value]


def cart(t: int, product: str = "p1", consent: bool | None = True) -> CustomerEventRecord:
    return ev(
        "add_to_cart",
        t,
        product_id=product,
        quantity=1,
        unit_price_minor=2500,
        currency="EUR",
        consent_marketing=consent,
    )


def test_store_visit_within_48h_of_an_open_cart_fires_on_the_visit() -> None:
    st_ = TriggerState()
    c = cart(T0)
    assert on_event(st_, c, True, POLICY) == []
    visit = ev("store_visit", T0 + 10 * HOUR_MS, "store", store_id="S7", visit_method="beacon")
    out = on_event(st_, visit, True, POLICY)
    kinds = [x.signal_type for x in out]
    assert kinds == ["cart_abandoned", "store_visit_open_cart"]
    offer = out[1]
    assert offer.evidence == (visit["event_id"], c["event_id"]) and offer.products == ("p1",)
    assert offer.store_id == "S7" and offer.event_time == visit["event_time"] and "10.0 h" in offer.reason
    assert on_event(st_, ev("store_visit", T0 + 11 * HOUR_MS, "store", store_id="S7"), True, POLICY) == []


def test_no_offer_after_a_purchase_or_beyond_the_window() -> None:
    st_ = TriggerState()
    on_event(st_, cart(T0), True, POLICY)
    on_event(st_, ev("purchase", T0 + HOUR_MS // 2, order_id="o", amount_minor=1, currency="EUR"), True, POLICY)
    assert on_event(st_, ev("store_visit", T0 + 5 * HOUR_MS, "store", store_id="S"), True, POLICY) == []
    st2 = TriggerState()
    on_event(st2, cart(T0), True, POLICY)
    late = on_event(st2, ev("store_geofence_enter", T0 + 49 * HOUR_MS, "mobile", store_id="S"), True, POLICY)
    assert [x.signal_type for x in late] == ["cart_abandoned"]


def test_cart_abandoned_on_the_timer_and_cross_channel_return() -> None:
    st_ = TriggerState()
    on_event(st_, cart(T0, "p9"), True, POLICY)
    assert triggers.timers(st_, T0 + HOUR_MS - 1, POLICY) == []
    fired = triggers.timers(st_, T0 + HOUR_MS, POLICY)
    assert [x.signal_type for x in fired] == ["cart_abandoned"] and fired[0].products == ("p9",)
    assert triggers.timers(st_, T0 + 5 * HOUR_MS, POLICY) == []  # once per cart
    same = on_event(st_, ev("product_view", T0 + 2 * HOUR_MS, "web", product_id="p9"), True, POLICY)
    assert same == []  # same channel: not a cross-channel return
    back = on_event(st_, ev("product_view", T0 + 3 * HOUR_MS, "mobile", product_id="p9"), True, POLICY)
    assert [x.signal_type for x in back] == ["cross_channel_return"] and "on mobile" in back[0].reason


def test_negative_sentiment_only_from_known_customers() -> None:
    post = ev("mention", T0, "social", sentiment=-0.8, platform="x")
    assert on_event(TriggerState(), post, False, POLICY) == []
    out = on_event(TriggerState(), post, True, POLICY)
    assert [x.signal_type for x in out] == ["negative_sentiment"] and out[0].score == -0.8


def test_campaign_touch_without_follow_up() -> None:
    st_ = TriggerState()
    touch = ev("page_view", T0, campaign_id="cmp1")
    on_event(st_, touch, True, POLICY)
    on_event(st_, ev("page_view", T0 + 60_000), True, POLICY)  # same visit: not a follow-up
    days = POLICY.follow_up_ms
    fired = triggers.timers(st_, T0 + 60_000 + days, POLICY)
    assert [(x.signal_type, x.campaign_id, x.evidence) for x in fired] == [
        ("campaign_no_follow_up", "cmp1", (touch["event_id"],))
    ]
    st2 = TriggerState()
    on_event(st2, ev("page_view", T0, campaign_id="cmp1"), True, POLICY)
    on_event(st2, ev("page_view", T0 + 2 * days // 7), True, POLICY)  # came back two days later
    assert triggers.timers(st2, T0 + 3 * days, POLICY) == []


def _cand(t: int, kind: str = "cart_abandoned") -> Candidate:
    return Candidate(kind, t, "r", ("e",))


def test_consent_gate_and_frequency_cap() -> None:
    st_ = TriggerState(consent=None)
    g = govern(st_, "c", [_cand(T0)], T0, POLICY)
    assert g.signals == [] and g.suppressed[0][1] == "consent"
    st_.consent = False
    assert govern(st_, "c", [_cand(T0)], T0, POLICY).signals == []
    st_.consent = True
    first = govern(st_, "c", [_cand(T0), _cand(T0 + HOUR_MS)], T0, POLICY)
    assert len(first.signals) == 1 and first.suppressed[0][1] == "cap"
    assert len(govern(st_, "c", [_cand(T0 + 25 * HOUR_MS)], T0, POLICY).signals) == 1
    assert len(govern(st_, "c", [_cand(T0 + 25 * HOUR_MS, "negative_sentiment")], T0, POLICY).signals) == 1


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=20), st.sampled_from(["cart_abandoned", "cmp-7"]))
def test_holdout_is_deterministic(customer: str, key: str) -> None:
    assert in_holdout(customer, key, 0.1) == in_holdout(customer, key, 0.1)
    assert not in_holdout(customer, key, 0.0)


def test_holdout_share_is_close_to_the_setting() -> None:
    share = sum(in_holdout(f"cust-{i}", "store_visit_open_cart", 0.1) for i in range(20000)) / 20000
    assert 0.09 < share < 0.11
    policy = TriggerPolicy(holdout_share=0.1)
    st_ = TriggerState(consent=True)
    held = [s.holdout for s in govern(st_, "cust-1", [_cand(T0)], T0, policy).signals]
    assert held == [in_holdout("cust-1", "cart_abandoned", 0.1)]


def test_scripted_journey_through_the_profile_step() -> None:
    """Cart at night on the web, the app next morning, store entry: transitions and the offer, in order."""
    codec = AvroCodec(FileSchemaRegistry())
    step = JourneySignals(SignalsConfig(triggers=POLICY), codec, journey_signal_metrics(CollectorRegistry()))
    prof, out = JourneyProfile(), SignalsOutput()
    view = ev("product_view", T0 - 60_000, product_id="p1", consent_marketing=True)
    step.on_instant("C1", prof, T0 - 60_000, [view], out)
    step.on_instant("C1", prof, T0, [cart(T0)], out)
    assert step.next_due(prof) == T0 + HOUR_MS  # the abandoned-cart timer
    step.on_instant("C1", prof, T0 + HOUR_MS, [], out)  # abandoned overnight
    step.on_instant("C1", prof, T0 + 9 * HOUR_MS, [ev("app_open", T0 + 9 * HOUR_MS, "mobile")], out)
    visit = ev("store_visit", T0 + 12 * HOUR_MS, "store", store_id="S1", visit_method="beacon")
    step.on_instant("C1", prof, T0 + 12 * HOUR_MS, [visit], out)
    moves = [codec.decode(v).record for _, v in out.transitions]
    assert [(m["from_stage"], m["to_stage"]) for m in moves] == [(None, "visitor"), ("visitor", "considering")]
    assert [m["seq"] for m in moves] == [1, 2] and all(m["reason"] and m["evidence_event_ids"] for m in moves)
    sigs = [codec.decode(v).record for _, v in out.signals]
    assert [s["signal_type"] for s in sigs] == ["cart_abandoned", "store_visit_open_cart"]
    assert sigs[1]["evidence_event_ids"][0] == visit["event_id"] and sigs[1]["product_ids"] == ["p1"]
    profiles = [codec.decode(v).record for _, v in out.profiles]
    versions = [p["version"] for p in profiles]
    assert versions == sorted(set(versions)) and versions[0] == (T0 - 60_000) * 1000  # numbered by event time
    assert profiles[-1]["stage"] == "considering" and profiles[-1]["marketing_consent"] is True
    # Nothing for a customer who denied consent.
    denied, out2 = JourneyProfile(), SignalsOutput()
    step.on_instant("C2", denied, T0, [cart(T0, consent=False)], out2)
    visit2 = ev("store_visit", T0 + 12 * HOUR_MS, "store", store_id="S1")
    step.on_instant("C2", denied, T0 + 12 * HOUR_MS, [visit2], out2)
    assert out2.signals == [] and len(out2.transitions) == 2


def test_a_store_visit_delivered_after_the_purchase_still_sees_the_cart_open_at_its_time() -> None:
    st_ = TriggerState()
    c = cart(T0)
    on_event(st_, c, True, POLICY)
    buy = ev("pos_purchase", T0 + 20 * HOUR_MS, "store", store_id="S1", amount_minor=2500, currency="EUR")
    assert [x.signal_type for x in on_event(st_, buy, True, POLICY)] == ["cart_abandoned"] and st_.cart == []
    visit = ev("store_visit", T0 + 19 * HOUR_MS, "store", store_id="S1")  # happened before the purchase, arrived after
    (offer,) = [x for x in on_event(st_, visit, True, POLICY) if x.signal_type == "store_visit_open_cart"]
    assert offer.event_time == visit["event_time"] and offer.products == ("p1",) and c["event_id"] in offer.evidence
    assert on_event(st_, ev("store_visit", T0 + 19 * HOUR_MS + 1, "store", store_id="S1"), True, POLICY) == []
    after = TriggerState()
    on_event(after, cart(T0), True, POLICY)
    on_event(after, buy, True, POLICY)
    late_visit = ev("store_visit", T0 + 21 * HOUR_MS, "store", store_id="S1")  # after the purchase: nothing open
    assert [x for x in on_event(after, late_visit, True, POLICY) if x.signal_type == "store_visit_open_cart"] == []
