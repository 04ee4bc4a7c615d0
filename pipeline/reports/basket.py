"""Market basket: association rules between item pairs (support, confidence, lift), computed in DuckDB.

A basket is the distinct products **bought** in one session (``session_baskets``: an online order and a store
receipt of the same session form one basket). Carted-but-unbought products are not in it: a rule should say
what customers buy together, and an abandoned cart is a different question (``signals``). For items A and B
over N baskets:

* support(A -> B) = baskets with A and B / N
* confidence(A -> B) = support(A -> B) / support(A)
* lift(A -> B) = confidence(A -> B) / support(B)

These are the definitions of mlxtend's ``association_rules`` on its frequent itemsets; the tests check the
numbers against mlxtend on the same baskets. Pairs only (the marketing question is "bought together"), both
directions. Pair counting is a self-join per basket, quadratic in basket size: fine for shopping baskets, not
for baskets of thousands of items.

**Default thresholds, scaled to the number of baskets N** (:func:`thresholds`; each can be set instead):

* min support = max(10 / N, 0.001): a pair must be bought together in at least 10 baskets (below that its
  lift is mostly noise: one basket more or less moves it by 10% or more), and in at least 0.1% of the
  baskets once there are more than 10,000 of them (so large warehouses list pairs that matter in volume);
  with fewer than 10 baskets it is 1 (a pair in every basket), and the report says the sample is too small;
* min confidence = 0.05: at least one in 20 baskets with A also holds B;
* min lift = 1: top rules show pairs bought together *more* often than by chance; a rule with lift 1 or less
  (independent or substitutes) is never a top rule, whatever threshold is asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb

from pipeline.reports.queries import Frame, run

BASKETS_SQL = "SELECT items FROM session_baskets"

#: Baskets a pair must share under the default support threshold, and the floor of that threshold.
MIN_PAIR_BASKETS = 10
SUPPORT_FLOOR = 0.001
DEFAULT_MIN_CONFIDENCE = 0.05
DEFAULT_MIN_LIFT = 1.0

_RULES_SQL = """
WITH b AS (SELECT row_number() OVER () AS basket, items FROM ({source})),
n AS (SELECT count(*) AS n FROM b),
i AS (SELECT b.basket, it.item FROM b, unnest(b.items) AS it(item)),
single AS (SELECT item, count(DISTINCT basket) AS baskets FROM i GROUP BY item),
pair AS (
    SELECT x.item AS a, y.item AS b, count(DISTINCT x.basket) AS baskets
    FROM i AS x JOIN i AS y ON x.basket = y.basket AND x.item <> y.item GROUP BY ALL),
rule AS (
    SELECT p.a AS antecedent, p.b AS consequent, p.baskets AS baskets,
           p.baskets / n.n AS support, p.baskets / sa.baskets AS confidence,
           (p.baskets / sa.baskets) / (sb.baskets / n.n) AS lift
    FROM pair AS p, n JOIN single AS sa ON sa.item = p.a JOIN single AS sb ON sb.item = p.b)
SELECT * FROM rule WHERE support >= ? AND confidence >= ? AND lift >= ?
ORDER BY lift DESC, support DESC, antecedent, consequent
"""


@dataclass(frozen=True)
class Thresholds:
    """What a rule must reach to be listed, and over how many baskets the defaults were scaled."""

    baskets: int
    min_support: float
    min_confidence: float
    min_lift: float

    @property
    def min_pair_baskets(self) -> int:
        """The support threshold as a number of baskets."""
        return math.ceil(self.min_support * self.baskets - 1e-9)

    def describe(self) -> str:
        """The thresholds in words, for the report."""
        lift = f"lift > {self.min_lift:g}" if self.min_lift <= 1 else f"lift ≥ {self.min_lift:g}"
        return (
            f"pairs bought together in at least {self.min_pair_baskets:,} of {self.baskets:,} baskets "
            f"(support ≥ {self.min_support:.2%}), confidence ≥ {self.min_confidence:.0%}, {lift}"
        )


def thresholds(
    baskets: int,
    min_support: float | None = None,
    min_confidence: float | None = None,
    min_lift: float | None = None,
) -> Thresholds:
    """The thresholds for ``baskets`` baskets: each one given, or its default (module docstring)."""
    if baskets < 0:
        raise ValueError(f"baskets must be >= 0, got {baskets}")
    # Under MIN_PAIR_BASKETS baskets a pair would have to be in every basket (support 1): too few to judge.
    support = min(1.0, max(MIN_PAIR_BASKETS / baskets, SUPPORT_FLOOR)) if baskets else 1.0
    if min_support is not None:
        support = min_support
    confidence = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
    lift = DEFAULT_MIN_LIFT if min_lift is None else min_lift
    if not (0 <= support <= 1 and 0 <= confidence <= 1):
        raise ValueError(f"support and confidence are fractions in [0, 1], got {support}, {confidence}")
    if lift < 1:
        raise ValueError(f"top rules need lift >= 1 (below 1: bought together less often than by chance), got {lift}")
    return Thresholds(baskets, support, confidence, lift)


def pair_rules(
    con: duckdb.DuckDBPyConnection,
    source: str = BASKETS_SQL,
    min_support: float = 0.0,
    min_confidence: float = 0.0,
    min_lift: float = 0.0,
) -> Frame:
    """Every rule A -> B over the baskets ``source`` selects (a query returning one ``items`` list per basket)
    that reaches the three thresholds, highest lift first. Columns: antecedent, consequent, baskets, support,
    confidence, lift."""
    return run(con, _RULES_SQL.format(source=source), [min_support, min_confidence, min_lift])


def basket_count(con: duckdb.DuckDBPyConnection, source: str = BASKETS_SQL) -> int:
    """How many baskets ``source`` selects (0 when the snapshot has none yet)."""
    frame = run(con, f"SELECT count(*) FROM ({source})")
    return int(frame.rows[0][0]) if frame.rows else 0


def top_rules(con: duckdb.DuckDBPyConnection, limit: int, limits: Thresholds, source: str = BASKETS_SQL) -> Frame:
    """The ``limit`` rules of highest lift that reach ``limits``; never a rule with lift of 1 or less."""
    rules = pair_rules(con, source, limits.min_support, limits.min_confidence, limits.min_lift)
    if not rules.columns:
        return rules
    lift = rules.columns.index("lift")
    return Frame(rules.columns, [r for r in rules.rows if r[lift] > 1][:limit])


def spanning_share(con: duckdb.DuckDBPyConnection) -> Frame:
    """How many baskets span an online channel and a store in one session."""
    return run(
        con,
        """SELECT count(*) AS baskets, count(*) FILTER (WHERE online_and_store) AS online_and_store
           FROM session_baskets""",
    )
