"""BG/NBD (Fader, Hardie & Lee 2005) and modified BG/NBD (Batislam et al. 2007): likelihood and scoring.

Inputs per customer are the classic summary: ``x`` repeat purchase periods (purchases after the first one,
same-period purchases merged), ``t_x`` time from the first to the last purchase, ``T`` time from the first
purchase to now, all in the model's time unit. Everything here is a pure function of numbers, usable on scalars
(online scoring) and numpy arrays (fitting).

Plain BG/NBD lets a customer drop out only after a repeat purchase, so a one-time buyer has P(alive) = 1 for
ever; the modified model also allows dropping out right after the first purchase, which is why the stream
scores churn with it by default.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betaln, gammaln, hyp2f1

BGNBD = "bgnbd"
MBGNBD = "mbgnbd"
VARIANTS = (BGNBD, MBGNBD)


class BgParams(NamedTuple):
    """Purchase rate ~ Gamma(r, alpha); dropout probability ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


def log_likelihood(
    p: BgParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike, variant: str = BGNBD
) -> NDArray[np.float64]:
    """Per-customer log-likelihood of (x, t_x, T) under ``variant`` (``bgnbd`` or ``mbgnbd``)."""
    xa, tx, ta = (np.asarray(v, dtype=np.float64) for v in (x, t_x, T))
    r, alpha, a, b = p
    a1 = gammaln(r + xa) - gammaln(r) + r * np.log(alpha)
    a3 = -(r + xa) * np.log(alpha + ta)
    if variant == BGNBD:
        a2 = betaln(a, b + xa) - betaln(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.log(a) - np.log(np.maximum(b + xa - 1, 1e-300)) - (r + xa) * np.log(alpha + tx)
        a4 = np.where(xa > 0, a4, -np.inf)
    elif variant == MBGNBD:
        # Dropout is also possible right after the first purchase, so the "dropped" term exists for x = 0 too.
        a2 = betaln(a, b + xa + 1) - betaln(a, b)
        a4 = np.log(a) - np.log(b + xa) - (r + xa) * np.log(alpha + tx)
    else:
        raise ValueError(f"unknown BG/NBD variant {variant!r}")
    out: NDArray[np.float64] = a1 + a2 + np.logaddexp(a3, a4)
    return out


def p_alive(p: BgParams, x: float, t_x: float, T: float, variant: str = BGNBD) -> float:
    """P(the customer is still active | x, t_x, T): the closed form of either variant."""
    r, alpha, a, b = p
    if variant == BGNBD:
        if x <= 0:
            return 1.0
        odds = a / (b + x - 1)
    elif variant == MBGNBD:
        odds = a / (b + x)
    else:
        raise ValueError(f"unknown BG/NBD variant {variant!r}")
    # Computed in logs: ((alpha+T)/(alpha+t_x))^(r+x) overflows for long-silent frequent buyers.
    log_term = np.log(odds) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return float(1.0 / (1.0 + np.exp(log_term))) if log_term < 700 else 0.0


def expected_purchases(p: BgParams, t: float, x: float, t_x: float, T: float, variant: str = BGNBD) -> float:
    """Expected purchases in the next ``t`` time units given the customer's history (conditional expectation)."""
    if t <= 0:
        return 0.0
    r, alpha, a, b = p
    z = t / (alpha + T + t)
    ratio = ((alpha + T) / (alpha + T + t)) ** (r + x)
    if variant == BGNBD:
        head = (a + b + x - 1) / (a - 1)
        tail = 1.0 - ratio * hyp2f1(r + x, b + x, a + b + x - 1, z)
    elif variant == MBGNBD:
        head = (a + b + x) / (a - 1)
        tail = 1.0 - ratio * hyp2f1(r + x, b + x + 1, a + b + x, z)
    else:
        raise ValueError(f"unknown BG/NBD variant {variant!r}")
    return float(head * tail * p_alive(p, x, t_x, T, variant))
