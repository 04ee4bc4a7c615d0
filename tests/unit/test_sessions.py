"""Sessioniser examples: gap boundaries, store gap, out-of-order, merges, replays, lateness, sweep, bot cap, state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.sessions import CLOSED, MERGED, OPEN, add_events, merge_states, new_session_id, next_due, sweep
from pipeline.domain.sessions_batch import batch_sessions, comparable, compare, latest_versions
from pipeline.domain.sessions_state import CustomerSessions
from pipeline.domain.sessions_summary import SessionPolicy, SessionVersion

MIN = 60_000
HOUR = 60 * MIN
POLICY = SessionPolicy()


def event(
    event_id: str, t: int, channel: str = "web", event_type: str = "page_view", **fields: Any
) -> CustomerEventRecord:
    """A canonical event with every optional field null unless given."""
    record: dict[str, Any] = {
        "event_id": event_id, "event_time": t, "ingested_at": t, "channel": channel, "event_type": event_type,
        "anonymous_id": None, "device_id": None, "customer_id": None, "email_hash": None, "phone_hash": None,
        "loyalty_id": None, "social_handle": None, "consent_marketing": None, "consent_analytics": None,
        "campaign_id": None, "utm_source": None, "utm_medium": None, "utm_campaign": None, "product_id": None,
        "quantity": None, "unit_price_minor": None, "items": [], "amount_minor": None, "currency": None,
        "order_id": None, "store_id": None, "visit_method": None, "page": None, "search_query": None,
        "platform": None, "rating": None, "sentiment": None, "source_topic": "customer-events",
        "source_partition": 0, "source_offset": 0, "schema_id": 1,
    }  # fmt: skip
    record.update(fields)
    return record  # type: ignore[return-value]


def store(event_id: str, t: int) -> CustomerEventRecord:
    return event(event_id, t, "store", "store_visit", store_id="S1")


def feed(
    *batches: Sequence[CustomerEventRecord], customer: str = "c1"
) -> tuple[CustomerSessions, list[SessionVersion]]:
    """Feed batches in order, each at an event-time clock that never goes back (a batch's earliest event time, or
    the clock so far); return the state and every version emitted."""
    state: CustomerSessions | None = None
    versions: list[SessionVersion] = []
    clock = 0
    for batch in batches:
        clock = max(clock, min(e["event_time"] for e in batch))
        update = add_events(state, customer, batch, clock, POLICY)
        assert not update.late
        state = update.state
        versions.extend(update.versions)
    assert state is not None
    return state, versions


def latest(versions: Sequence[SessionVersion]) -> dict[str, SessionVersion]:
    out: dict[str, SessionVersion] = {}
    for v in versions:
        assert v.version > out[v.session_id].version if v.session_id in out else v.version >= 1
        out[v.session_id] = v
    return out


def live(versions: Sequence[SessionVersion]) -> list[SessionVersion]:
    return sorted((v for v in latest(versions).values() if v.status != MERGED), key=lambda v: v.start_ms)


@pytest.mark.parametrize(("delta", "sessions"), [(30 * MIN, 1), (30 * MIN + 1, 2)])
def test_gap_boundary_is_inclusive(delta: int, sessions: int) -> None:
    _, versions = feed([event("a", 0), event("b", delta)])
    assert len(live(versions)) == sessions


@pytest.mark.parametrize(
    ("events", "sessions"),
    [
        ([event("a", 0), store("b", 90 * MIN)], 1),  # browsing, then driving to the store
        ([store("a", 0), event("b", 90 * MIN)], 1),  # either side of the gap may be the store event
        ([event("a", 0), store("b", 90 * MIN + 1)], 2),
        ([event("a", 0), event("b", 31 * MIN)], 2),
        # The store event links straight back to "a" even though a-b is longer than the web gap.
        ([event("a", 0), event("b", 40 * MIN), store("c", 80 * MIN)], 1),
    ],
)
def test_store_gap(events: list[CustomerEventRecord], sessions: int) -> None:
    _, versions = feed(events)
    assert len(live(versions)) == sessions
    assert len(batch_sessions({"c1": events}, POLICY)) == sessions


def test_out_of_order_event_lands_in_its_session() -> None:
    _, versions = feed([event("a", 0), event("c", 20 * MIN, "store", "store_visit", store_id="S1")],
                       [event("b", 10 * MIN, "mobile", "app_open")])  # fmt: skip
    (session,) = live(versions)
    assert session.channel_path == "web>mobile>store" and session.event_count == 3
    assert [v.version for v in versions] == [1, 10 * MIN * 1000]  # numbered by the clock


def test_bridging_event_merges_and_survivor_keeps_the_earlier_id() -> None:
    state, versions = feed([event("a", 0)], [event("c", 50 * MIN)], [event("b", 25 * MIN)])
    first, second = new_session_id("c1", "a"), new_session_id("c1", "c")
    final = latest(versions)
    assert final[first].status == OPEN and final[first].event_count == 3 and final[first].version == 50 * MIN * 1000
    assert final[second].status == MERGED and final[second].merged_into == first
    assert [r.sid for r in state.runs] == [first]


def test_replayed_event_is_ignored() -> None:
    state, _ = feed([event("a", 0), event("b", 5 * MIN)])
    update = add_events(state, "c1", [event("b", 5 * MIN), event("a", 0)], 5 * MIN, POLICY)
    assert update.versions == [] and update.late == [] and update.state == state


def test_one_version_per_session_per_call_numbered_by_the_clock() -> None:
    _, versions = feed([event(f"e{i}", i * MIN) for i in range(5)], [event("x", 7 * MIN)])
    assert [(v.version, v.event_count) for v in versions] == [(1, 5), (7 * MIN * 1000, 6)]


def test_late_event_beyond_grace_is_reported_not_lost() -> None:
    state, _ = feed([event("a", 0), event("b", 10 * MIN)], [event("z", 10 * HOUR)])
    horizon = 10 * HOUR - POLICY.grace_ms
    update = add_events(state, "c1", [event("late", horizon - 1), event("ok", horizon)], 10 * HOUR, POLICY)
    assert [e["event_id"] for e, _ in update.late] == ["late"]
    assert "grace" in update.late[0][1]
    # Older than the horizon but inside a retained session's span: still placed.
    inside = add_events(update.state, "c1", [event("in", 5 * MIN)], 10 * HOUR, POLICY)
    assert not inside.late and inside.versions[0].event_count == 3


def test_sweep_closes_once_the_clock_passes_what_could_still_link() -> None:
    update = add_events(None, "c1", [event("a", 0)], 0, POLICY)
    limit = POLICY.store_gap_ms  # a store visit up to here could still join
    assert next_due(update.state, POLICY) == limit + 1
    assert sweep(update.state, limit, POLICY).versions == []
    closed = sweep(update.state, limit + 1, POLICY)
    assert [(v.status, v.version) for v in closed.versions] == [(CLOSED, (limit + 1) * 1000)]
    assert sweep(closed.state, limit + 2, POLICY).versions == []  # closed once, not again


def test_sweep_drops_what_is_final() -> None:
    update = add_events(None, "c1", [event("a", 0), event("b", 10 * MIN)], 10 * MIN, POLICY)
    limit = 10 * MIN + POLICY.store_gap_ms
    closed = sweep(update.state, limit + 1, POLICY)
    assert [v.status for v in closed.versions] == [CLOSED] and closed.state.runs  # kept while within grace
    assert next_due(closed.state, POLICY) == limit + POLICY.grace_ms + 1
    gone = sweep(closed.state, limit + POLICY.grace_ms + 1, POLICY)
    assert gone.versions == [] and gone.state.runs == () and next_due(gone.state, POLICY) is None


def test_late_event_reopens_a_closed_session() -> None:
    update = add_events(None, "c1", [event("a", 0), event("c", 20 * MIN)], 20 * MIN, POLICY)
    clock = 20 * MIN + POLICY.store_gap_ms + 1
    closed = sweep(update.state, clock, POLICY)
    reopened = add_events(closed.state, "c1", [event("b", 10 * MIN)], clock + 1, POLICY)
    assert [(v.status, v.version, v.event_count) for v in reopened.versions] == [(OPEN, (clock + 1) * 1000, 3)]


def test_bot_sessions_are_split_at_the_cap_deterministically() -> None:
    events = [event(f"e{i:03}", i * 10 * MIN) for i in range(80)]  # one click every 10 min for 13 h 10 min
    state, versions = feed(events[::2], events[1::2])
    pieces = live(versions)
    assert [p.bot_suspect for p in pieces] == [True, True]
    assert pieces[0].end_ms - pieces[0].start_ms == POLICY.max_duration_ms
    assert pieces[1].session_id == pieces[0].session_id + ".1"
    assert sorted(map(comparable, pieces)) == sorted(map(comparable, batch_sessions({"c1": events}, POLICY)))
    # The first piece becomes final while the bot keeps going: it is dropped, the run continues.
    more = [event(f"m{i:03}", 800 * MIN + i * 10 * MIN) for i in range(40)]
    update = add_events(state, "c1", more, 800 * MIN, POLICY)
    swept = sweep(update.state, 1190 * MIN, POLICY)
    assert swept.state.runs[0].piece0 == 1 and len(swept.state.runs[0].facts) < 120
    tail = add_events(swept.state, "c1", [event("n", 1200 * MIN)], 1200 * MIN, POLICY)
    stream = live([*versions, *update.versions, *swept.versions, *tail.versions])
    batch = batch_sessions({"c1": [*events, *more, event("n", 1200 * MIN)]}, POLICY)
    assert sorted(map(comparable, stream)) == sorted(map(comparable, batch))


def test_merge_states_reattributes_and_merges_linked_sessions() -> None:
    a, a_versions = feed([event("a1", 30 * MIN)], customer="A")
    b, b_versions = feed([event("b1", 0), event("b2", 5 * HOUR)], customer="B")
    update = merge_states(a, b, "A", POLICY, 6 * HOUR)
    early, late_b, a_sid = new_session_id("B", "b1"), new_session_id("B", "b2"), new_session_id("A", "a1")
    final = latest([*a_versions, *b_versions, *update.versions])
    assert final[early].status == OPEN and final[early].customer_id == "A" and final[early].event_count == 2
    assert final[a_sid].status == MERGED and final[a_sid].merged_into == early  # B's session started earlier
    assert final[late_b].customer_id == "A" and final[late_b].version == 6 * HOUR * 1000
    assert final[late_b].event_count == 1
    assert update.state.customer_id == "A" and update.state.max_event_time == 5 * HOUR


def test_summary_fields() -> None:
    events = [
        event("1", 0, "social", "mention", sentiment=0.5, campaign_id="spring"),
        event("2", 1 * MIN, "web", "product_view", product_id="p1", utm_campaign="summer"),
        event("3", 2 * MIN, "web", "add_to_cart", product_id="p1", quantity=2, unit_price_minor=500, currency="EUR"),
        event("4", 3 * MIN, "web", "remove_from_cart", product_id="p1", quantity=1, unit_price_minor=500,
              currency="EUR"),
        event("5", 4 * MIN, "mobile", "product_view", product_id="p2", sentiment=-0.25),
        event("6", 60 * MIN, "store", "pos_purchase", store_id="S9", amount_minor=1500, currency="EUR",
              items=[{"product_id": "p2", "quantity": 1, "unit_price_minor": 1500}]),
        event("7", 61 * MIN, "store", "return", store_id="S9", amount_minor=200, currency="EUR"),
        event("8", 62 * MIN, "web", "purchase", amount_minor=999, currency="GBP"),  # other currency: left out
    ]  # fmt: skip
    (s,) = live(feed(events)[1])
    assert (s.channel_path, s.channels) == ("social>web>mobile>store>web", ("mobile", "social", "store", "web"))
    assert s.counts_by_type == {"add_to_cart": 1, "mention": 1, "pos_purchase": 1, "product_view": 2,
                                "purchase": 1, "remove_from_cart": 1, "return": 1}  # fmt: skip
    assert (s.products_viewed, s.products_carted, s.products_bought) == (("p1", "p2"), ("p1",), ("p2",))
    assert (s.cart_value_minor, s.revenue_minor, s.currency) == (500, 1300, "EUR")
    assert (s.store_ids, s.avg_sentiment) == (("S9",), 0.125)
    assert (s.first_campaign_id, s.campaign_ids) == ("spring", ("spring", "summer"))
    assert (s.duration_s, s.event_count, s.bot_suspect) == (62 * 60, 8, False)
    record = s.to_record()
    assert record["channels"] == ["mobile", "social", "store", "web"] and record["session_id"] == s.session_id


def test_state_round_trips_through_json_and_resumes_identically() -> None:
    state, _ = feed([event("a", 0, campaign_id="c", sentiment=0.1)], [event("b", 10 * MIN, "mobile", "add_to_cart",
                    product_id="p", quantity=1, unit_price_minor=5, currency="EUR")])  # fmt: skip
    restored = CustomerSessions.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    nxt = [event("c", 20 * MIN)]
    assert add_events(restored, "c1", nxt, 20 * MIN, POLICY) == add_events(state, "c1", nxt, 20 * MIN, POLICY)
    with pytest.raises(ValueError, match="format"):
        CustomerSessions.from_dict({**state.to_dict(), "format": 99})


def test_policy_and_identity_are_checked() -> None:
    with pytest.raises(ValueError):
        SessionPolicy(gap_ms=10, store_gap_ms=5)
    with pytest.raises(ValueError):
        SessionPolicy(max_duration_ms=POLICY.store_gap_ms - 1)
    with pytest.raises(ValueError, match="fed events"):
        add_events(CustomerSessions("c1"), "c2", [event("a", 0)], 0, POLICY)


def test_session_exactly_at_the_grace_horizon_is_kept_for_an_on_time_store_visit() -> None:
    reach, grace = POLICY.store_gap_ms, POLICY.grace_ms
    state, versions = feed([event("a", 0)], [event("far", reach + grace)])
    swept = sweep(state, reach + grace, POLICY)  # horizon = reach: "a" + reach is not beyond it, so "a" must stay
    assert len(swept.state.runs) == 2
    update = add_events(swept.state, "c1", [store("s", reach)], reach + grace, POLICY)  # exactly at the horizon
    assert not update.late
    stream = live([*versions, *swept.versions, *update.versions])
    batch = batch_sessions({"c1": [event("a", 0), event("far", reach + grace), store("s", reach)]}, POLICY)
    assert sorted(map(comparable, stream)) == sorted(map(comparable, batch)) and len(batch) == 2


def test_dropped_bot_piece_still_links_a_late_event_into_its_run() -> None:
    piece0 = [event(f"a{i:02}", i * 10 * MIN) for i in range(72)] + [store("s", 715 * MIN), event("b", 720 * MIN)]
    tail = [event(f"t{i}", (800 + 10 * i) * MIN) for i in range(6)]  # 800 links to the store visit at 715
    state, versions = feed(piece0, tail)
    swept = sweep(state, 850 * MIN, POLICY)  # horizon 850 - 120 = 730 min: the first piece (0..720) is final
    assert swept.state.runs[0].piece0 == 1
    # On time (= horizon); links only to dropped events (720, and the store at 715), so only the carry knows.
    update = add_events(swept.state, "c1", [event("x", 730 * MIN)], 850 * MIN, POLICY)
    assert not update.late and len(update.state.runs) == 1
    stream = live([*versions, *swept.versions, *update.versions])
    batch = batch_sessions({"c1": [*piece0, *tail, event("x", 730 * MIN)]}, POLICY)
    assert sorted(map(comparable, stream)) == sorted(map(comparable, batch))


def test_sweep_reports_no_change() -> None:
    update = add_events(None, "c1", [event("a", 0)], 1_000, POLICY)
    first = sweep(update.state, 1_001, POLICY)
    quiet = sweep(first.state, 1_001, POLICY)
    assert quiet.state is first.state and quiet.versions == []


def test_merge_into_a_customer_without_state_republishes_under_the_survivor() -> None:
    b, b_versions = feed([event("b1", 0)], customer="B")
    update = merge_states(None, b, "A", POLICY, 0)
    (v,) = update.versions
    assert (v.session_id, v.customer_id, v.version, v.status) == (b_versions[0].session_id, "A", 2, OPEN)
    assert update.state.customer_id == "A"


def test_compare_counts_sessions_that_differ() -> None:
    events = [event("a", 0), event("b", 10 * MIN), event("c", 3 * HOUR)]
    _, versions = feed(events)
    assert compare(latest_versions(versions), batch_sessions({"c1": events}, POLICY)).differing == 0
    diff = compare(latest_versions(versions), batch_sessions({"c1": events[:2]}, POLICY))
    assert diff.differing == 1 and diff.only_batch == []
