"""Maximum-likelihood fits of BG/NBD (either variant) and Gamma-Gamma with scipy.optimize.

Parameters are optimised on the log scale (they must be positive) with L-BFGS-B, then polished with
Nelder-Mead from the optimum, which makes the result insensitive to the start point on well-posed data.
Guarantees: a :class:`FitError` when the optimiser ends on a non-finite likelihood or there is too little data.
Not guaranteed: a global optimum on pathological data (tiny or degenerate cohorts).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from pipeline.models import bgnbd, gammagamma
from pipeline.models.bgnbd import BgParams
from pipeline.models.gammagamma import GgParams
from pipeline.models.params import ModelParams
from pipeline.models.transactions import Summary

MIN_CUSTOMERS = 10


class FitError(RuntimeError):
    """The fit did not produce usable parameters."""


def _minimise(nll: Callable[[NDArray[np.float64]], float], start: NDArray[np.float64]) -> NDArray[np.float64]:
    first = minimize(nll, start, method="L-BFGS-B")
    polished = minimize(nll, first.x, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20000})
    best = polished.x if polished.fun <= first.fun else first.x
    if not np.isfinite(nll(best)):
        raise FitError("the optimiser ended on a non-finite likelihood")
    out: NDArray[np.float64] = np.exp(best)
    return out


def fit_bgnbd(s: Summary, variant: str = bgnbd.BGNBD) -> tuple[BgParams, float]:
    """MLE of (r, alpha, a, b) on the summary; returns the parameters and the total log-likelihood."""
    if len(s.customers) < MIN_CUSTOMERS:
        raise FitError(f"need at least {MIN_CUSTOMERS} customers, got {len(s.customers)}")
    scale = float(max(s.T.max(), 1e-9))  # fit on a unit scale: the optimiser sees comparable magnitudes

    def nll(theta: NDArray[np.float64]) -> float:
        r, alpha, a, b = np.exp(theta)
        ll = bgnbd.log_likelihood(BgParams(r, alpha, a, b), s.x, s.t_x / scale, s.T / scale, variant)
        value = -float(ll.sum())
        return value if np.isfinite(value) else 1e300

    r, alpha, a, b = _minimise(nll, np.zeros(4))
    params = BgParams(float(r), float(alpha * scale), float(a), float(b))
    return params, float(bgnbd.log_likelihood(params, s.x, s.t_x, s.T, variant).sum())


def fit_gammagamma(x: NDArray[np.float64], m: NDArray[np.float64]) -> tuple[GgParams, float]:
    """MLE of (p, q, v) on repeat customers (x >= 1, m > 0); returns the parameters and the log-likelihood."""
    keep = (x > 0) & (m > 0)
    xs, ms = x[keep], m[keep]
    if len(xs) < MIN_CUSTOMERS:
        raise FitError(f"need at least {MIN_CUSTOMERS} repeat customers with spend, got {len(xs)}")

    def nll(theta: NDArray[np.float64]) -> float:
        value = -float(gammagamma.log_likelihood(GgParams(*np.exp(theta)), xs, ms).sum())
        return value if np.isfinite(value) else 1e300

    p, q, v = _minimise(nll, np.array([0.0, 0.0, np.log(float(ms.mean()))]))
    params = GgParams(float(p), float(q), float(v))
    return params, float(gammagamma.log_likelihood(params, xs, ms).sum())


def fit_model(s: Summary, end: date, unit_days: float, variant: str, version: str | None = None) -> ModelParams:
    """Fit both models on one summary and wrap them as a versioned parameter set (Gamma-Gamma optional:
    left out, not failed, when the cohort has too few repeat customers with spend)."""
    bg, ll = fit_bgnbd(s, variant)
    try:
        gg: GgParams | None = fit_gammagamma(s.x, s.monetary)[0]
    except FitError:
        gg = None
    now = datetime.now(UTC)
    return ModelParams(
        version=version or f"{variant}-{now.strftime('%Y%m%dT%H%M%SZ')}",
        variant=variant,
        bg=bg,
        gg=gg,
        unit_days=unit_days,
        log_likelihood=ll,
        customers=len(s.customers),
        calibration_end=end.isoformat(),
        fitted_at=now.isoformat(timespec="seconds"),
    )
