"""Uplift of a treatment against its randomised holdout, with a confidence interval (pure, no I/O).

Uplift = conversion(treated) - conversion(holdout). The interval is Newcombe's hybrid score interval for a
difference of two independent proportions (method 10 in Newcombe 1998): built from the two Wilson score
intervals, it keeps its coverage for small groups and rates near 0 or 1, where the textbook Wald interval is
too narrow. Randomisation makes the difference causal; the interval says how sure we are it is not noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Uplift:
    """Conversion of both groups, their difference and its confidence interval (all as fractions)."""

    arm: str
    treated: int
    holdout: int
    treated_rate: float
    holdout_rate: float
    uplift: float
    low: float
    high: float
    confidence: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when ``n`` is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def uplift(
    arm: str, treated: int, treated_converted: int, holdout: int, holdout_converted: int, confidence: float = 0.95
) -> Uplift:
    """Uplift of ``arm`` with a Newcombe interval at ``confidence``; raises ValueError on impossible counts."""
    if not (0 <= treated_converted <= treated and 0 <= holdout_converted <= holdout):
        raise ValueError(f"{arm}: converted counts must lie between 0 and the group size")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p1 = treated_converted / treated if treated else 0.0
    p2 = holdout_converted / holdout if holdout else 0.0
    l1, u1 = wilson(treated_converted, treated, z)
    l2, u2 = wilson(holdout_converted, holdout, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Uplift(arm, treated, holdout, p1, p2, d, low, high, confidence)
