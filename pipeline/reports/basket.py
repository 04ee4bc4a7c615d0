"""Market basket: association rules between item pairs (support, confidence, lift), computed in DuckDB.

A basket is the distinct products of one session (``session_baskets``: what was carted or bought on any
channel, so an online cart and the store receipt of the same session are one basket). For items A and B over
N baskets:

* support(A -> B) = baskets with A and B / N
* confidence(A -> B) = support(A -> B) / support(A)
* lift(A -> B) = confidence(A -> B) / support(B)

These are the definitions of mlxtend's ``association_rules`` on its frequent itemsets; the tests check the
numbers against mlxtend on the same baskets. Pairs only (the marketing question is "bought together"), both
directions, filtered by ``min_support``. Pair counting is a self-join per basket, quadratic in basket size:
fine for shopping baskets, not for baskets of thousands of items.
"""

from __future__ import annotations

import duckdb

from pipeline.reports.queries import Frame, run

_RULES_SQL = """
WITH b AS (SELECT row_number() OVER () AS basket, items FROM ({source})),
n AS (SELECT count(*) AS n FROM b),
i AS (SELECT b.basket, it.item FROM b, unnest(b.items) AS it(item)),
single AS (SELECT item, count(DISTINCT basket) AS baskets FROM i GROUP BY item),
pair AS (
    SELECT x.item AS a, y.item AS b, count(DISTINCT x.basket) AS baskets
    FROM i AS x JOIN i AS y ON x.basket = y.basket AND x.item <> y.item GROUP BY ALL)
SELECT p.a AS antecedent, p.b AS consequent, p.baskets AS baskets,
       p.baskets / n.n AS support, p.baskets / sa.baskets AS confidence,
       (p.baskets / sa.baskets) / (sb.baskets / n.n) AS lift
FROM pair AS p, n JOIN single AS sa ON sa.item = p.a JOIN single AS sb ON sb.item = p.b
WHERE p.baskets / n.n >= ?
ORDER BY lift DESC, support DESC, antecedent, consequent
"""


def pair_rules(
    con: duckdb.DuckDBPyConnection, source: str = "SELECT items FROM session_baskets", min_support: float = 0.0
) -> Frame:
    """Rules A -> B for every pair with support >= ``min_support`` over the baskets ``source`` selects (a
    query returning one ``items`` list per basket). Columns: antecedent, consequent, baskets, support,
    confidence, lift."""
    return run(con, _RULES_SQL.format(source=source), [min_support])


def spanning_share(con: duckdb.DuckDBPyConnection) -> Frame:
    """How many baskets span an online channel and a store in one session."""
    return run(
        con,
        """SELECT count(*) AS baskets, count(*) FILTER (WHERE online_and_store) AS online_and_store
           FROM session_baskets""",
    )
