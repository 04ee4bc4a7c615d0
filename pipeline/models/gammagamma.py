"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005, "RFM and CLV"): likelihood, expected spend, discounted CLV.

A customer's per-period spends are Gamma(p, nu) around their own mean, and nu ~ Gamma(q, v) across customers.
The model is fitted on repeat customers only (``x`` >= 1 repeat periods with mean repeat spend ``m``) and
assumes spend is independent of purchase frequency; it says nothing about one-time buyers except through the
population mean ``p * v / (q - 1)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln

from pipeline.models.bgnbd import BgParams, expected_purchases


class GgParams(NamedTuple):
    """Shape ``p`` of each spend; the per-customer scale has shape ``q`` and rate ``v``."""

    p: float
    q: float
    v: float


def log_likelihood(g: GgParams, x: ArrayLike, m: ArrayLike) -> NDArray[np.float64]:
    """Per-customer log-density of the mean repeat spend ``m`` over ``x`` repeat periods (x >= 1, m > 0)."""
    xa, ma = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
    p, q, v = g
    px = p * xa
    out: NDArray[np.float64] = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(ma)
        + px * np.log(xa)
        - (px + q) * np.log(v + xa * ma)
    )
    return out


def expected_spend(g: GgParams, x: float, m: float) -> float:
    """E[spend per period | x, m]: a credibility-weighted mix of the population mean and the customer's mean."""
    p, q, v = g
    if q <= 1:
        raise ValueError("Gamma-Gamma expected spend needs q > 1")
    population = p * v / (q - 1)
    if x <= 0:
        return float(population)
    weight = p * x / (p * x + q - 1)
    return float((1 - weight) * population + weight * m)


def discounted_clv(
    bg: BgParams,
    g: GgParams,
    x: float,
    t_x: float,
    T: float,
    m: float,
    variant: str,
    horizon: float,
    step: float,
    rate_per_step: float,
) -> float:
    """Discounted value of the next ``horizon`` time units: expected purchases in each ``step``, times expected
    spend, discounted at ``rate_per_step`` per step (lifetimes' convention, so figures are comparable)."""
    spend = expected_spend(g, x, m)
    total, prev, k = 0.0, 0.0, 1
    while k * step <= horizon + 1e-9:
        cum = expected_purchases(bg, k * step, x, t_x, T, variant)
        total += (cum - prev) * spend / (1 + rate_per_step) ** k
        prev, k = cum, k + 1
    return total
