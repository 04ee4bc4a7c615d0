"""Model validation a marketer can read: fit on a calibration period, predict the holdout period, compare.

As in the BG/NBD paper (Fader, Hardie & Lee 2005, the CDNOW calibration/holdout tables): customers are grouped
by their repeat purchases in the calibration period (0, 1, ..., 7+); per group, the mean number of purchase days
in the holdout period is compared with the model's conditional expectation given each customer's history.

Pure: the caller reads the purchases. Guarantees: the same transactions and dates give the same table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import numpy as np

from pipeline.models import bgnbd
from pipeline.models.checks import fit_caveats
from pipeline.models.fit import fit_model
from pipeline.models.params import ModelParams
from pipeline.models.transactions import Transaction, summarise

TOP_BUCKET = 7


@dataclass(frozen=True)
class Bucket:
    """Customers with ``label`` repeat purchases in calibration: their mean holdout purchases, actual and
    predicted."""

    label: str
    customers: int
    actual: float
    predicted: float

    @property
    def error(self) -> float:
        return self.predicted - self.actual


@dataclass(frozen=True)
class Validation:
    params: ModelParams
    holdout_end: date
    buckets: list[Bucket]
    actual_total: int
    predicted_total: float
    warnings: list[str]

    @property
    def total_error_pct(self) -> float:
        return 100.0 * (self.predicted_total - self.actual_total) / self.actual_total if self.actual_total else 0.0


def validate(transactions: Iterable[Transaction], calibration_end: date, holdout_end: date, unit_days: float = 7.0,
             variant: str = bgnbd.MBGNBD) -> Validation:  # fmt: skip
    """Fit on purchases up to ``calibration_end``; compare with purchase days in (calibration_end, holdout_end].

    Raises ``ValueError`` when the holdout period is empty or no customer bought in the calibration period."""
    if holdout_end <= calibration_end:
        raise ValueError(f"the holdout period must end after the calibration period ({holdout_end} <= "
                         f"{calibration_end})")  # fmt: skip
    txs = list(transactions)
    summary = summarise(txs, calibration_end, unit_days)
    if not summary.customers:
        raise ValueError(f"no purchase on or before {calibration_end}: nothing to calibrate on")
    params = fit_model(summary, calibration_end, unit_days, variant, "validation")
    later: defaultdict[str, set[date]] = defaultdict(set)
    for tx in txs:
        if calibration_end < tx.day <= holdout_end:
            later[tx.customer].add(tx.day)
    t = (holdout_end - calibration_end).days / unit_days
    groups: defaultdict[int, list[tuple[int, float]]] = defaultdict(list)
    for i, customer in enumerate(summary.customers):
        x, t_x, big_t = float(summary.x[i]), float(summary.t_x[i]), float(summary.T[i])
        predicted = bgnbd.expected_purchases(params.bg, t, x, t_x, big_t, variant)
        groups[min(int(x), TOP_BUCKET)].append((len(later.get(customer, ())), predicted))
    buckets = []
    for k, rows in sorted(groups.items()):
        label = f"{k}+" if k == TOP_BUCKET else str(k)
        actual_mean, predicted_mean = float(np.mean([a for a, _ in rows])), float(np.mean([p for _, p in rows]))
        buckets.append(Bucket(label, len(rows), actual_mean, predicted_mean))
    actual = sum(a for rows in groups.values() for a, _ in rows)
    predicted_total = float(sum(p for rows in groups.values() for _, p in rows))
    return Validation(params, holdout_end, buckets, actual, predicted_total, fit_caveats(params))
