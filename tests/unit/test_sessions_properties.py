"""Property tests: the streaming sessioniser equals the batch reference for in-order input with any micro-batch
boundaries and sweeps, for any arrival order within the grace, and across identity merges (also merges decided
after a session became final, against the recomputation of ``omnistream evaluate sessions``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.sessions import add_events, merge_states, sweep
from pipeline.domain.sessions_batch import batch_sessions, comparable, latest_versions
from pipeline.domain.sessions_state import CustomerSessions
from pipeline.domain.sessions_summary import SessionPolicy, SessionVersion
from pipeline.evaluate.sessions import Merge, evaluate_sessions, kept_apart
from tests.unit.test_sessions import event

MIN = 60_000
# A short bot cap so that random data hits it often; gap boundaries land exactly on whole minutes.
POLICIES = [SessionPolicy(), SessionPolicy(max_duration_ms=100 * MIN, grace_ms=60 * MIN)]
STEPS_MIN = [0, 0, 1, 5, 15, 29, 30, 31, 45, 60, 89, 90, 91, 100, 150, 400]
KINDS: list[tuple[str, str, dict[str, Any]]] = [
    ("web", "page_view", {}),
    ("web", "product_view", {"product_id": "p1"}),
    ("mobile", "product_view", {"product_id": "p2"}),
    ("web", "add_to_cart", {"product_id": "p1", "quantity": 2, "unit_price_minor": 300, "currency": "EUR"}),
    ("mobile", "remove_from_cart", {"product_id": "p1", "quantity": 1, "unit_price_minor": 300, "currency": "EUR"}),
    ("web", "purchase", {"amount_minor": 900, "currency": "EUR", "campaign_id": "k1"}),
    ("store", "store_visit", {"store_id": "S1"}),
    ("store", "pos_purchase", {"store_id": "S2", "amount_minor": 700, "currency": "GBP",
                               "items": [{"product_id": "p3", "quantity": 1, "unit_price_minor": 700}]}),
    ("store", "return", {"store_id": "S2", "amount_minor": 100, "currency": "EUR"}),
    ("social", "mention", {"sentiment": 0.1}),
    ("social", "review", {"sentiment": -0.7, "rating": 2, "utm_campaign": "k2"}),
]  # fmt: skip


@st.composite
def customer_events(draw: st.DrawFn, customer: str) -> list[CustomerEventRecord]:
    steps = draw(st.lists(st.tuples(st.sampled_from(STEPS_MIN), st.integers(0, 2), st.integers(0, len(KINDS) - 1)),
                          min_size=1, max_size=25))  # fmt: skip
    out: list[CustomerEventRecord] = []
    t = draw(st.integers(0, 600)) * MIN
    for n, (step, jitter, kind) in enumerate(steps):
        t += step * MIN + (0, 1, -1)[jitter] * (1 if step else 0)  # exact boundaries and one ms either side
        channel, etype, fields = KINDS[kind]
        out.append(event(f"{customer}-{n:02}", t, channel, etype, **fields))
    return out


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, list[CustomerEventRecord]]:
    n = draw(st.integers(1, 3))
    return {f"c{i}": draw(customer_events(f"c{i}")) for i in range(n)}


def final_sessions(versions: Sequence[SessionVersion]) -> Counter[tuple[Any, ...]]:
    """Latest version per session id, merged ones removed; versions of one id must strictly increase."""
    seen: dict[str, int] = {}
    for v in versions:
        assert v.version > seen.get(v.session_id, 0), v
        seen[v.session_id] = v.version
    return Counter(map(comparable, latest_versions(versions)))


def run_stream(
    arrivals: list[tuple[int, CustomerEventRecord]], cuts: list[bool], sweeps: list[int | None], policy: SessionPolicy
) -> list[SessionVersion]:
    """Feed (event-time clock, event) arrivals (sorted by clock) in micro-batches, each placed at its earliest
    clock; between batches maybe sweep at a clock up to the next batch's. Ends with a sweep far ahead, which
    must empty state."""
    states: dict[str, CustomerSessions] = {}
    versions: list[SessionVersion] = []
    batch: dict[str, list[CustomerEventRecord]] = {}
    clock: int | None = None
    for k, (at, ev) in enumerate(arrivals):
        clock = at if clock is None else clock
        batch.setdefault(ev["event_id"].split("-")[0], []).append(ev)
        if k + 1 < len(arrivals) and not cuts[k % len(cuts)]:
            continue
        for customer, events in batch.items():
            update = add_events(states.get(customer), customer, events, clock, policy)
            assert update.late == []
            assert len({v.session_id for v in update.versions}) == len(update.versions)
            states[customer] = update.state
            versions.extend(update.versions)
        batch = {}
        step = sweeps[k % len(sweeps)]
        upto = arrivals[k + 1][0] if k + 1 < len(arrivals) else clock + 10**9
        if step is not None:
            at_sweep = min(upto, clock + step * MIN)
            for customer, state in states.items():
                update = sweep(state, at_sweep, policy)
                states[customer] = update.state
                versions.extend(update.versions)
        clock = None
    for state in states.values():
        update = sweep(state, 10**15, policy)
        assert update.state.runs == ()
        assert all(v.status == "closed" for v in update.versions)
        versions.extend(update.versions)
    return versions


common = dict(
    world=worlds(),
    policy=st.sampled_from(POLICIES),
    cuts=st.lists(st.booleans(), min_size=1, max_size=8),
    sweeps=st.lists(st.one_of(st.none(), st.integers(0, 400)), min_size=1, max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(**common)
def test_in_order_stream_equals_batch(
    world: dict[str, list[CustomerEventRecord]], policy: SessionPolicy, cuts: list[bool], sweeps: list[int | None]
) -> None:
    arrivals = sorted(((e["event_time"], e) for evs in world.values() for e in evs),
                      key=lambda p: (p[0], p[1]["event_id"]))  # fmt: skip
    stream = final_sessions(run_stream(arrivals, cuts, sweeps, policy))
    assert stream == Counter(map(comparable, batch_sessions(world, policy)))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), **common)
def test_arrival_order_within_grace_does_not_matter(
    data: st.DataObject,
    world: dict[str, list[CustomerEventRecord]],
    policy: SessionPolicy,
    cuts: list[bool],
    sweeps: list[int | None],
) -> None:
    # Each event is applied at most the grace after its event time; some events are also replayed.
    arrivals: list[tuple[int, int, CustomerEventRecord]] = []
    for evs in world.values():
        for e in evs:
            delay = data.draw(st.sampled_from([0, 1, policy.grace_ms // 2, policy.grace_ms]) | st.integers(0, 10**7))
            delay = min(delay, policy.grace_ms)
            arrivals.append((e["event_time"] + delay, data.draw(st.integers(0, 10**6)), e))
            if data.draw(st.integers(0, 9)) == 0:
                arrivals.append((e["event_time"] + policy.grace_ms, data.draw(st.integers(0, 10**6)), e))
    arrivals.sort(key=lambda a: (a[0], a[1]))
    stream = final_sessions(run_stream([(a[0], a[2]) for a in arrivals], cuts, sweeps, policy))
    assert stream == Counter(map(comparable, batch_sessions(world, policy)))


@settings(max_examples=200, deadline=None)
@given(events=customer_events("p"), policy=st.sampled_from(POLICIES), data=st.data())
def test_identity_merge_equals_batch_of_the_union(
    events: list[CustomerEventRecord], policy: SessionPolicy, data: st.DataObject
) -> None:
    owner = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    split = data.draw(st.integers(0, len(events)))
    states: dict[str, CustomerSessions | None] = {"A": None, "B": None}
    versions: list[SessionVersion] = []
    for e, to_a in zip(events[:split], owner, strict=False):
        customer = "A" if to_a else "B"
        update = add_events(states[customer], customer, [e], e["event_time"], policy)
        states[customer] = update.state
        versions.extend(update.versions)
    absorbed = states["B"] or CustomerSessions("B")
    at = events[split - 1]["event_time"] if split else 0
    merged = merge_states(states["A"], absorbed, "A", policy, at)
    versions.extend(merged.versions)
    state = merged.state
    for e in events[split:]:
        update = add_events(state, "A", [e], e["event_time"], policy)
        state = update.state
        versions.extend(update.versions)
    versions.extend(sweep(state, 10**15, policy).versions)
    assert final_sessions(versions) == Counter(map(comparable, batch_sessions({"A": events}, policy)))


SHORT_GRACE = [SessionPolicy(grace_ms=60 * MIN), SessionPolicy(grace_ms=0)]


@settings(max_examples=300, deadline=None)
@given(events=customer_events("p"), policy=st.sampled_from(SHORT_GRACE), data=st.data())
def test_a_merge_hands_over_what_is_not_final_and_the_evaluator_recomputes_exactly_that(
    events: list[CustomerEventRecord], policy: SessionPolicy, data: st.DataObject
) -> None:
    # B is merged into A at clock M, maybe long after some sessions of either became final (then dropped from state:
    # those keep their own session, docs/time.md). The journey sweeps at every instant, the merge's included.
    owner = data.draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    split = data.draw(st.integers(0, len(events)))
    after = events[split - 1]["event_time"] if split else 0
    settled = policy.reach_ms + policy.grace_ms
    delay = data.draw(st.sampled_from([0, 1, settled - 1, settled, settled + 1]) | st.integers(0, 10 * settled))
    at = after + delay if split == len(events) else min(after + delay, events[split]["event_time"])
    states: dict[str, CustomerSessions | None] = {"A": None, "B": None}
    versions: list[SessionVersion] = []

    def sweep_all(clock: int) -> None:
        for name, state in states.items():
            if state is not None:
                swept = sweep(state, clock, policy)
                states[name] = swept.state
                versions.extend(swept.versions)

    first: dict[str, str] = {}
    for e, to_a in zip(events[:split], owner, strict=False):
        customer = first[e["event_id"]] = "A" if to_a else "B"
        sweep_all(e["event_time"])
        update = add_events(states[customer], customer, [e], e["event_time"], policy)
        states[customer] = update.state
        versions.extend(update.versions)
    sweep_all(at)
    if states["B"] is not None:
        merged = merge_states(states["A"], states["B"], "A", policy, at)
        states["A"] = merged.state
        versions.extend(merged.versions)
    states["B"] = None
    for e in events[split:]:
        first[e["event_id"]] = "A"
        sweep_all(e["event_time"])
        update = add_events(states["A"], "A", [e], e["event_time"], policy)
        assert update.late == []
        states["A"] = update.state
        versions.extend(update.versions)
    sweep_all(10**15)

    apart = kept_apart(first, [Merge(at, at, "link", "B", "A")], events, {}, policy)
    diff, _, _ = evaluate_sessions([v.to_record() for v in versions], events, dict.fromkeys(first, "A"), policy,
                                   {"B": "A"}, apart)  # fmt: skip
    assert diff.differing == 0 and diff.only_batch == [], diff
