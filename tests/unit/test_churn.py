"""Daily-period statistics, online BTYD scoring against the closed form, RFM and the churn band."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain import churn
from pipeline.domain.churn import DAY_MS, ChurnPolicy, CustomerStats, Score
from pipeline.models import bgnbd
from pipeline.models.bgnbd import BgParams
from pipeline.models.fit import fit_model
from pipeline.models.gammagamma import GgParams
from pipeline.models.params import ModelParams
from pipeline.models.transactions import Transaction, read_transactions, summarise

DATA = Path(__file__).parent.parent / "data"
END = date(1997, 9, 30)


def _ms(d: date, hour: int = 12) -> int:
    return int(datetime(d.year, d.month, d.day, hour, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def cdnow() -> tuple[list[Transaction], ModelParams]:
    txs = [t for t in read_transactions(DATA / "cdnow_sample.txt") if isinstance(t, Transaction)]
    params = fit_model(summarise(txs, END, 7.0), END, 7.0, bgnbd.BGNBD, version="cdnow")
    return txs, params


@pytest.mark.parametrize("variant", [bgnbd.BGNBD, bgnbd.MBGNBD])
def test_online_p_alive_equals_the_closed_form(cdnow: tuple[list[Transaction], ModelParams], variant: str) -> None:
    txs, fitted = cdnow
    params = ModelParams(**{**fitted.__dict__, "variant": variant})
    stats: dict[str, CustomerStats] = {}
    # Streamed one purchase at a time, several per day, in file order (not sorted by customer).
    for n, tx in enumerate(t for t in txs if t.day <= END):
        s = stats.setdefault(tx.customer, CustomerStats())
        churn.add_purchase(s, f"e{n}", _ms(tx.day, 9 + n % 10), round(tx.amount * 100), "USD")
    summary = summarise(txs, END, 7.0)
    today = _ms(END) // DAY_MS
    worst = 0.0
    for i, c in enumerate(summary.customers):
        online = churn.score(stats[c], today, params).p_alive
        closed = bgnbd.p_alive(params.bg, summary.x[i], summary.t_x[i], summary.T[i], variant)
        assert online is not None
        worst = max(worst, abs(online - closed))
    assert worst <= 1e-9


def test_same_day_purchases_merge_and_replays_count_once() -> None:
    s = CustomerStats()
    d = _ms(date(2024, 3, 1), 9)
    assert churn.add_purchase(s, "a", d, 1000, "EUR")
    assert churn.add_purchase(s, "b", d + 3_600_000, 500, "EUR")
    assert not churn.add_purchase(s, "b", d + 3_600_000, 500, "EUR")  # replay
    assert churn.add_purchase(s, "c", d + 2 * DAY_MS, 700, "EUR")
    assert not churn.add_purchase(s, "d", d + 3 * DAY_MS, 700, "USD")  # second currency is not summed
    assert (s.buy_days, s.first_spend, s.repeat_spend, s.revenue) == (2, 1500, 700, 2200)
    # An out-of-order purchase before the first day makes the old first day a repeat day.
    assert churn.add_purchase(s, "e", d - DAY_MS, 300, "EUR")
    assert (s.buy_days, s.first_spend, s.repeat_spend) == (3, 300, 2200)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5000)), min_size=1, max_size=30), st.randoms())
def test_purchase_days_do_not_depend_on_arrival_order(buys: list[tuple[int, int]], rnd: object) -> None:
    base = _ms(date(2024, 1, 1), 0)
    events = [(f"e{i}", base + day * DAY_MS + i * 1000, amount) for i, (day, amount) in enumerate(buys)]
    # Arrival may be out of order by at most a couple of days (the session grace is hours).
    shuffled = sorted(events, key=lambda e: e[1] + rnd.randint(0, 2 * DAY_MS))  # type: ignore[attr-defined]
    a, b = CustomerStats(), CustomerStats()
    for e in sorted(events, key=lambda e: e[1]):
        churn.add_purchase(a, e[0], e[1], e[2], "EUR")
    for e in shuffled:
        churn.add_purchase(b, e[0], e[1], e[2], "EUR")
    days = sorted({d for d, _ in buys})
    assert a.buy_days == b.buy_days == len(days)
    assert a.revenue == b.revenue == sum(x for _, x in buys)
    assert (a.first_buy, a.last_buy) == (b.first_buy, b.last_buy)
    assert a.first_spend == b.first_spend == sum(x for d, x in buys if d == days[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 200), min_size=1, max_size=40))
def test_activity_days_are_distinct_days(days: list[int]) -> None:
    s = CustomerStats()
    for d in sorted(days):
        churn.add_activity(s, d * DAY_MS + 5)
        churn.add_activity(s, d * DAY_MS + 6)
    assert s.act_days == len(set(days))
    assert (s.first_act, s.last_act) == (min(days), max(days))


def test_p_alive_decays_day_by_day_without_events() -> None:
    params = ModelParams(
        "t", bgnbd.MBGNBD, BgParams(0.5, 6.0, 0.9, 1.6), GgParams(6.25, 3.74, 15.44), 7.0, 0, 0, "", ""
    )
    s = CustomerStats()
    for k in range(4):
        churn.add_purchase(s, f"e{k}", (100 + 10 * k) * DAY_MS, 2500, "EUR")
    scores = [churn.score(s, 130 + d, params) for d in range(0, 400, 30)]
    alive = [sc.p_alive for sc in scores]
    assert all(x is not None for x in alive)
    assert all(a > b for a, b in itertools.pairwise(alive))  # type: ignore[operator]
    assert scores[0].clv_minor is not None and scores[0].clv_minor > scores[-1].clv_minor  # type: ignore[operator]


def test_churn_band_does_not_flap() -> None:
    policy = ChurnPolicy(enter=0.3, exit=0.5)
    on, flips = False, 0
    for p in [0.35, 0.29, 0.31, 0.29, 0.45, 0.31, 0.49, 0.51, 0.49, 0.31, 0.29]:
        new = churn.churn_band(on, Score(p, None, None, None), policy)
        flips += new != on
        on = new
    assert flips == 3  # on at 0.29, off at 0.51, on again at 0.29: never on the wobble around one threshold
    with pytest.raises(ValueError):
        ChurnPolicy(enter=0.5, exit=0.3)


def test_reasons_compare_silence_with_the_usual_gap() -> None:
    s = CustomerStats()
    for k in range(3):
        churn.add_purchase(s, f"e{k}", (100 + 10 * k) * DAY_MS, 2500, "EUR")
        churn.add_activity(s, (100 + 10 * k) * DAY_MS)
    s.last_negative_ms = 150 * DAY_MS
    reason, details = churn.churn_reasons(s, Score(0.2, None, None, None), 160, 160 * DAY_MS)
    assert "40 days since last purchase vs usual gap 10" in reason
    assert "recent negative sentiment" in reason
    assert details["usual_gap_days"] == "10.0" and details["p_alive"] == "0.2000"


def test_rfm_segments() -> None:
    s = CustomerStats()
    assert churn.rfm_segment(s, 10) == "prospect"
    for k in range(4):
        churn.add_purchase(s, f"e{k}", (100 + k) * DAY_MS, 100, "EUR")
    assert churn.rfm_segment(s, 110) == "champion"
    assert churn.rfm_segment(s, 250) == "at_risk"
    assert churn.rfm_segment(s, 1000) == "lost"


def test_a_degenerate_fit_scores_nothing_rather_than_nan() -> None:
    # A modified BG/NBD fitted on two weeks of history: the optimiser ran off to huge parameters.
    bg = BgParams(2157518.84, 23528823.38, 115936.94, 101024.67)
    params = ModelParams("t", bgnbd.MBGNBD, bg, GgParams(3.33, 2.26, 64.02), 1.0, 0, 0, "", "")
    s = CustomerStats()
    churn.add_purchase(s, "e1", 100 * DAY_MS, 2500, "EUR")
    churn.add_purchase(s, "e2", 103 * DAY_MS, 4000, "EUR")
    sc = churn.score(s, 110, params)
    for value in sc:
        assert value is None or math.isfinite(value)
