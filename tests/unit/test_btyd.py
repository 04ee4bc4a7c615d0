"""BTYD models on the CDNOW cohort: published BG/NBD estimates, Gamma-Gamma against numeric integration."""

from __future__ import annotations

import csv
import itertools
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from pipeline.models import bgnbd, gammagamma
from pipeline.models.bgnbd import BgParams
from pipeline.models.fit import FitError, fit_bgnbd, fit_gammagamma, fit_model
from pipeline.models.gammagamma import GgParams
from pipeline.models.params import ModelFileError, load, save
from pipeline.models.transactions import BadLine, Summary, Transaction, read_transactions, summarise

DATA = Path(__file__).parent.parent / "data"
END = date(1997, 9, 30)
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}


@pytest.fixture(scope="module")
def cdnow() -> Summary:
    rows = list(read_transactions(DATA / "cdnow_sample.txt"))
    assert not [r for r in rows if isinstance(r, BadLine)]
    return summarise([r for r in rows if isinstance(r, Transaction)], END, unit_days=7.0)


@pytest.fixture(scope="module")
def fitted(cdnow: Summary) -> tuple[BgParams, float]:
    return fit_bgnbd(cdnow)


def test_summary_matches_the_published_cohort_summary(cdnow: Summary) -> None:
    with (DATA / "cdnow_customers_summary.csv").open() as fh:
        ref = {int(r["ID"]): r for r in csv.DictReader(fh)}
    # The summary's ID is the file's second column (the sample id), not the customer id.
    sample_id = {line.split()[0]: int(line.split()[1]) for line in (DATA / "cdnow_sample.txt").read_text().splitlines()}
    assert len(cdnow.customers) == len(ref) == 2357
    for i, c in enumerate(cdnow.customers):
        row = ref[sample_id[c]]
        assert cdnow.x[i] == int(row["frequency"])
        assert cdnow.t_x[i] == pytest.approx(float(row["recency"]), abs=0.006)
        assert cdnow.T[i] == pytest.approx(float(row["T"]), abs=0.006)


def test_bgnbd_fit_reproduces_the_published_estimates(fitted: tuple[BgParams, float]) -> None:
    params, ll = fitted
    for name, published in PUBLISHED.items():
        assert getattr(params, name) == pytest.approx(published, rel=0.005), name
    assert round(ll, 1) == -9582.4


def test_paper_example_expected_purchases(fitted: tuple[BgParams, float]) -> None:
    # Fader, Hardie & Lee (2005): x=2, t_x=30.43, T=38.86 -> 1.226 purchases expected in the next 39 weeks.
    assert bgnbd.expected_purchases(fitted[0], 39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=5e-4)


def test_p_alive_is_the_ratio_of_the_likelihood_terms(fitted: tuple[BgParams, float]) -> None:
    # P(alive) = P(data and alive) / P(data): the alive term is the likelihood with the dropout term removed.
    r, alpha, a, b = p = fitted[0]
    for x, t_x, big_t in [(2, 30.43, 38.86), (5, 10.0, 38.0), (1, 0.5, 20.0)]:
        alive = (
            math.lgamma(r + x)
            - math.lgamma(r)
            + r * math.log(alpha)
            - (r + x) * math.log(alpha + big_t)
            + math.lgamma(a + b)
            + math.lgamma(b + x)
            - math.lgamma(b)
            - math.lgamma(a + b + x)
        )
        total = float(bgnbd.log_likelihood(p, [x], [t_x], [big_t])[0])
        assert bgnbd.p_alive(p, x, t_x, big_t) == pytest.approx(math.exp(alive - total), rel=1e-9)


def test_plain_model_keeps_one_time_buyers_alive_the_modified_one_does_not(cdnow: Summary) -> None:
    mbg, ll = fit_bgnbd(cdnow, bgnbd.MBGNBD)
    assert np.isfinite(ll)
    assert bgnbd.p_alive(BgParams(1, 1, 1, 1), 0, 0, 50) == 1.0
    early, late = bgnbd.p_alive(mbg, 0, 0, 5, bgnbd.MBGNBD), bgnbd.p_alive(mbg, 0, 0, 50, bgnbd.MBGNBD)
    assert 0 < late < early < 1


def test_p_alive_decays_while_nothing_happens(fitted: tuple[BgParams, float]) -> None:
    values = [bgnbd.p_alive(fitted[0], 3, 10.0, t) for t in (10, 20, 40, 80, 160)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert bgnbd.p_alive(fitted[0], 3, 10.0, 1e7) < 1e-12  # no overflow far out


def _gg_loglik_numeric(g: GgParams, x: np.ndarray, m: np.ndarray) -> float:
    """Total log marginal density of the mean of x Gamma(p, nu) spends, integrating nu over its Gamma(q, v) prior
    numerically (trapezoid on a log-nu grid around each customer's peak), without the conjugate closed form."""
    p, q, v = g
    u = np.log(p / m)[:, None] + np.linspace(-12, 12, 6001)[None, :]
    nu = np.exp(u)
    log_f = (
        stats.gamma.logpdf(m[:, None], a=p * x[:, None], scale=1 / (nu * x[:, None]))
        + stats.gamma.logpdf(nu, a=q, scale=1 / v)
        + u
    )
    top = log_f.max(axis=1, keepdims=True)
    dens = integrate.trapezoid(np.exp(log_f - top), u, axis=1)
    return float((np.log(dens) + top[:, 0]).sum())


def test_gamma_gamma_fit_is_the_optimum_of_an_independently_integrated_likelihood(cdnow: Summary) -> None:
    g, ll = fit_gammagamma(cdnow.x, cdnow.monetary)
    keep = cdnow.x > 0
    xs, ms = cdnow.x[keep], cdnow.monetary[keep]
    full = _gg_loglik_numeric(g, xs, ms)
    assert full == pytest.approx(ll, rel=1e-8)
    # The fitted point is a maximum of the numeric likelihood: a 1% step in any parameter lowers it.
    for k in range(3):
        for step in (0.99, 1.01):
            moved = list(g)
            moved[k] *= step
            assert _gg_loglik_numeric(GgParams(*moved), xs, ms) < full


def test_gamma_gamma_expected_spend_equals_the_posterior_mean_by_integration() -> None:
    g = GgParams(6.25, 3.74, 15.44)
    for x, m in [(1, 20.0), (4, 35.5), (10, 12.0)]:

        def post(nu: float, m: float = m, x: float = x) -> float:
            """Unnormalised posterior of the spend rate nu given x spends averaging m."""
            return float(stats.gamma.pdf(m, a=g.p * x, scale=1 / (nu * x)) * stats.gamma.pdf(nu, a=g.q, scale=1 / g.v))

        norm = integrate.quad(post, 0, np.inf)[0]
        mean = integrate.quad(lambda nu: g.p / nu * post(nu), 0, np.inf)[0] / norm
        assert gammagamma.expected_spend(g, x, m) == pytest.approx(mean, rel=1e-7)


def test_discounted_clv_is_positive_and_grows_with_horizon(fitted: tuple[BgParams, float]) -> None:
    g = GgParams(6.25, 3.74, 15.44)
    short = gammagamma.discounted_clv(fitted[0], g, 2, 30.43, 38.86, 22.35, bgnbd.BGNBD, 13, 1, 0.002)
    long = gammagamma.discounted_clv(fitted[0], g, 2, 30.43, 38.86, 22.35, bgnbd.BGNBD, 52, 1, 0.002)
    undiscounted = gammagamma.discounted_clv(fitted[0], g, 2, 30.43, 38.86, 22.35, bgnbd.BGNBD, 52, 1, 0.0)
    assert 0 < short < long < undiscounted
    spend = gammagamma.expected_spend(g, 2, 22.35)
    assert undiscounted == pytest.approx(bgnbd.expected_purchases(fitted[0], 52, 2, 30.43, 38.86) * spend, rel=1e-9)


def test_parameter_file_round_trips_and_rejects_unknown_formats(cdnow: Summary, tmp_path: Path) -> None:
    params = fit_model(cdnow, END, 7.0, bgnbd.BGNBD, version="test-1")
    path = tmp_path / "m" / "params.json"
    save(params, path)
    assert load(path) == params
    path.write_text('{"format": "other/9"}')
    with pytest.raises(ModelFileError, match="unknown model parameter format"):
        load(path)


def test_reader_accepts_csv_and_reports_bad_lines(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("customer_id,date,amount,items\nc1,2024-01-02,10.5,2\nc1,20240103,x,1\n,2024-01-03,1,\n")
    rows = list(read_transactions(f))
    assert rows[0] == Transaction("c1", date(2024, 1, 2), 10.5, 2, 2)
    assert isinstance(rows[1], BadLine) and rows[1].line == 3
    assert isinstance(rows[2], BadLine) and rows[2].reason == "empty customer"


def test_same_day_purchases_are_one_period() -> None:
    d = date(2024, 1, 1)
    txs = [
        Transaction("a", d, 5, None, 1),
        Transaction("a", d, 7, None, 2),
        Transaction("a", date(2024, 1, 8), 3, None, 3),
    ]
    s = summarise(txs, date(2024, 1, 15), unit_days=1)
    assert (s.x[0], s.t_x[0], s.T[0], s.monetary[0]) == (1, 7, 14, 3)


def test_fit_refuses_tiny_cohorts() -> None:
    s = summarise([Transaction("a", date(2024, 1, 1), 1, None, 1)], date(2024, 2, 1))
    with pytest.raises(FitError):
        fit_bgnbd(s)
