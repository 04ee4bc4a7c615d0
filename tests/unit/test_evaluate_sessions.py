"""``omnistream evaluate sessions``: the recomputation follows the merge hand-over, which carries a profile's
sessions that can still change and leaves the final ones as they are (docs/time.md, docs/identity.md)."""

from __future__ import annotations

from pipeline.domain.sessions import add_events, merge_states, sweep
from pipeline.domain.sessions_state import CustomerSessions
from pipeline.domain.sessions_summary import SessionPolicy, SessionVersion
from pipeline.evaluate.sessions import Merge, evaluate_sessions, kept_apart
from tests.unit.test_sessions import event

MIN = 60_000
DAY = 1440 * MIN
POLICY = SessionPolicy(grace_ms=12 * 60 * MIN)
T = 100 * DAY
# A phone enters the store's geofence (its device profile), then the loyalty card is scanned and used (the customer).
GEOFENCE = event("g", T, "mobile", "store_geofence_enter", store_id="S1")
VISIT = event("v", T + 89_000, "store", "store_visit", store_id="S1")
POS = event("b", T + 409_000, "store", "pos_purchase", store_id="S1", amount_minor=500, currency="EUR")
FIRST = {"g": "p:device", "v": "c:C1", "b": "c:C1"}


def stream(merge_at: int) -> list[SessionVersion]:
    """The journey's calls: each profile's events, sweeps at every instant, the merge of the device at ``merge_at``."""
    device = add_events(None, "p:device", [GEOFENCE], T, POLICY)
    customer = add_events(None, "c:C1", [VISIT, POS], T + 409_000, POLICY)
    versions = [*device.versions, *customer.versions]
    swept = [sweep(device.state, merge_at, POLICY), sweep(customer.state, merge_at, POLICY)]
    versions += [v for s in swept for v in s.versions]
    merged = merge_states(swept[1].state, swept[0].state, "c:C1", POLICY, merge_at)
    versions += merged.versions
    assert isinstance(merged.state, CustomerSessions)
    return versions + sweep(merged.state, 10**15, POLICY).versions


def evaluate(versions: list[SessionVersion], merge_at: int) -> tuple[int, int, int]:
    events = [GEOFENCE, VISIT, POS]
    apart = kept_apart(FIRST, [Merge(merge_at, merge_at, "login", "p:device", "c:C1")], events, {}, POLICY)
    diff, n_stream, n_batch = evaluate_sessions([v.to_record() for v in versions], events, dict.fromkeys(FIRST, "c:C1"),
                                                POLICY, {"p:device": "c:C1"}, apart)  # fmt: skip
    return diff.differing + len(diff.only_batch), n_stream, n_batch


def test_a_merge_within_the_grace_joins_the_sessions_and_the_recomputation_expects_one() -> None:
    at = T + 10 * MIN
    assert evaluate(stream(at), at) == (0, 1, 1)


def test_a_merge_after_both_sessions_became_final_leaves_them_apart_and_the_recomputation_too() -> None:
    at = T + 6 * DAY  # the device logs in days later: the geofence session and the store session are final
    versions = stream(at)
    assert evaluate(versions, at) == (0, 2, 2)
    # What the recomputation over the final attribution alone (every merge carrying everything) would say.
    diff, _, _ = evaluate_sessions([v.to_record() for v in versions], [GEOFENCE, VISIT, POS],
                                   dict.fromkeys(FIRST, "c:C1"), POLICY, {"p:device": "c:C1"})  # fmt: skip
    assert len(diff.only_stream) == 2 and len(diff.only_batch) == 1


def test_only_the_final_session_stays_apart() -> None:
    # The device also has a session still open at the merge: that one is handed over and joins the customer's.
    late = event("late", T + 2 * DAY, "mobile", "product_view", product_id="P1")
    later = event("later", T + 2 * DAY + 5 * MIN, "web", "page_view")
    first = {**FIRST, "late": "p:device", "later": "c:C1"}
    events = [GEOFENCE, VISIT, POS, late, later]
    at = T + 2 * DAY + 10 * MIN
    apart = kept_apart(first, [Merge(at, at, "login", "p:device", "c:C1")], events, {}, POLICY)
    assert sorted(apart) == ["b", "g", "v"] and apart["g"] != apart["v"] == apart["b"]
