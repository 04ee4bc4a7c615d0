"""Acceptance on simulator truth: churn ranking AUC and the store-visit-with-open-cart trigger."""

from __future__ import annotations

from pipeline.evaluate.journeys import auc, evaluate_journeys
from pipeline.simulate.config import SimConfig

DAY_MS = 86_400_000
END = 1_780_000_000_000 - 1_780_000_000_000 % DAY_MS


def test_churn_auc_and_open_cart_offers_on_simulated_truth() -> None:
    config = SimConfig(customers=800, days=90, seed=5, end_ms=END, bad_share=0, duplicate_share=0, late_share=0)
    r = evaluate_journeys(config)
    print(r)
    assert r.churned > 50 and r.journeys_consented > 30
    assert r.auc >= 0.80
    assert r.offer_rate >= 0.95
    assert r.offers_denied == 0 and r.signals_denied == 0
    assert r.journeys > r.journeys_consented  # consent-denied journeys exist and got nothing
    assert 0.03 < r.holdout_share < 0.2
    assert r.profile_bytes_max <= 2048


def test_auc_helper() -> None:
    assert auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auc([0.5, 0.5], [False, True]) == 0.5
