"""What a reader must know before trusting a section of the report, in words (pure, no I/O but the queries).

Three kinds of note, each a sentence the renderers print under the section it concerns:

* **Small samples.** A percentage over fewer than ``MIN_SAMPLE`` units is flagged with its base and how far
  one unit moves it ("over 7 sessions: one session moves it by 14 points").
* **Degenerate model fits.** BTYD parameters at the edge of what the optimiser can reach (a, b, r, alpha, p, q
  or v beyond 10^±4) mean the data did not identify them; the scores built on them (P(alive), expected
  purchases, CLV) are then shown with that warning, and CLV is not computed when Gamma-Gamma's q <= 1.
* **Empty sections** say why they are empty, from what the warehouse holds (no signals of that type, no
  customer scored, everything in the holdout, …), never just "no data".
"""

from __future__ import annotations

import duckdb

from pipeline.models.checks import fit_caveats as fit_caveats  # the report's callers find it here too
from pipeline.reports.queries import Frame, run

#: Below this many units a percentage is shown with a caveat (one unit moves it by more than 3 points).
MIN_SAMPLE = 30


def small_base(what: str, n: int, unit: str) -> str | None:
    """The caveat for a percentage of ``what`` over ``n`` ``unit``s, or None when ``n`` is large enough."""
    if n >= MIN_SAMPLE or n <= 0:
        return None
    plural = unit if n == 1 else unit + "s"
    return (
        f"{what}: the percentage is over only {n} {plural} (fewer than {MIN_SAMPLE}): one {unit} more or less "
        f"moves it by {100 / n:.0f} points, so read it as a hint, not a rate."
    )


def percentage_caveats(frame: Frame, label: str, base: str, unit: str) -> list[str]:
    """A caveat for every row of ``frame`` whose percentage rests on fewer than ``MIN_SAMPLE`` of ``base``."""
    if not frame.rows or label not in frame.columns or base not in frame.columns:
        return []
    notes = [small_base(str(row[0]), int(row[1] or 0), unit)
             for row in zip(frame.column(label), frame.column(base), strict=True)]  # fmt: skip
    return [n for n in notes if n]


def churn_empty_reason(con: duckdb.DuckDBPyConnection) -> str:
    """Why the churn-risk table has no row, from what the warehouse holds."""
    counts = run(
        con,
        """SELECT (SELECT count(*) FROM customers),
                  (SELECT count(*) FROM customers WHERE p_alive IS NOT NULL OR p_active IS NOT NULL),
                  (SELECT count(*) FROM customers WHERE purchase_days > 0),
                  (SELECT count(*) FROM signals WHERE signal_type = 'churn_risk'),
                  (SELECT count(*) FROM signals WHERE signal_type = 'churn_risk' AND holdout)""",
    )
    if not counts.rows:
        return "No churn-risk list: this snapshot has no customers or signals table yet."
    customers, scored, buyers, churn, holdout = (int(v or 0) for v in counts.rows[0])
    if customers == 0:
        return "No churn-risk list: no customer profile has reached the warehouse yet."
    if scored == 0:
        if buyers == 0:
            return (
                f"No churn-risk list: none of the {customers:,} customers has bought yet, and churn risk is "
                "scored only from a purchase history."
            )
        return (
            f"No churn-risk list: none of the {customers:,} customers has a P(alive) score ({buyers:,} have "
            "bought), so the workers run without model parameters (OMNISTREAM_MODEL_PARAMS_PATH, written by "
            "`omnistream model fit`) and no churn-risk signal can fire."
        )
    if churn == 0:
        return (
            f"No churn-risk list: {scored:,} customers are scored and none has entered the churn band "
            "(P(active), else P(alive), below its entry threshold, 0.3 by default)."
        )
    if churn == holdout:
        return (
            f"No churn-risk list: all {churn:,} churn-risk signals went to the randomised holdout (recorded for "
            "the uplift measurement, not acted on)."
        )
    return "No churn-risk list: the churn-risk signals' customers are not in this snapshot's profiles."


def empty_reason(section: str) -> str:
    """Why a section other than churn is empty (what it needs that the warehouse lacks)."""
    return _EMPTY.get(section, "Nothing to show: the tables this section reads are empty in this snapshot.")


_EMPTY = {
    "headline": "No sessions in this snapshot yet.",
    "funnel": "No sessions in this snapshot yet: the funnel counts sessions per channel.",
    "cross_vs_single": "No sessions in this snapshot yet.",
    "revenue": "No session with money (and a currency) yet.",
    "paths": "No cross-channel session yet: every session so far touched one channel only.",
    "stages": "No journey-stage transition in this snapshot yet.",
    "clv": "No customer has a CLV: CLV needs model parameters with a spend model (`omnistream model fit`) "
    "and at least one purchase.",
    "rfm": "No customer profile in this snapshot yet.",
    "engagement": "No session carried a campaign id (UTM or send id) yet.",
    "uplift": "No signal type or campaign has a randomised holdout group yet, so no uplift can be measured.",
    "quality": "No data-quality counts: the failed-events and sessions tables are missing.",
}
