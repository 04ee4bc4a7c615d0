"""The marketing report's questions as SQL over a warehouse snapshot, each returning a small :class:`Frame`.

Every function takes an open (read-only) DuckDB connection and reads the documented tables and views
(docs/warehouse.md): sessions through ``live_sessions`` (merged tombstones excluded), profiles from
``customers``, triggers from ``signals``. Functions never write. A table the snapshot does not have yet (a
stage not deployed) gives an empty frame, not an error, so the report still renders what exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb

FUNNEL_STEPS = ("sessions", "cart", "checkout", "purchase")


@dataclass(frozen=True)
class Frame:
    """A query result: column names and rows (plain Python values)."""

    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def run(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Frame:
    """Run ``sql``; an empty frame when a table or view it reads does not exist in this snapshot."""
    try:
        cur = con.execute(sql, params or [])
    except duckdb.CatalogException:
        return Frame((), [])
    return Frame(tuple(d[0] for d in cur.description or ()), cur.fetchall())


def funnel_by_channel(con: duckdb.DuckDBPyConnection) -> Frame:
    """Sessions touching each channel and how many reached cart, checkout, purchase (each step implies the
    previous one: a store purchase without an online checkout still counts as checked out)."""
    return run(
        con,
        """
        WITH s AS (
            SELECT ch.channel, len(products_bought) > 0 OR revenue_minor > 0 AS bought,
                   coalesce(counts_by_type['checkout_start'], 0) > 0 AS checkout,
                   len(products_carted) > 0 OR coalesce(counts_by_type['add_to_cart'], 0) > 0 AS cart
            FROM live_sessions, unnest(channels) AS ch(channel))
        SELECT channel, count(*) AS sessions, count(*) FILTER (WHERE cart OR checkout OR bought) AS cart,
               count(*) FILTER (WHERE checkout OR bought) AS checkout, count(*) FILTER (WHERE bought) AS purchase
        FROM s GROUP BY channel ORDER BY sessions DESC""",
    )


def cross_vs_single(con: duckdb.DuckDBPyConnection) -> Frame:
    """Conversion (sessions with a purchase / sessions) of single- vs cross-channel sessions (revenue is in
    :func:`revenue_by_currency`: money of different currencies is never added)."""
    return run(
        con,
        """
        SELECT CASE WHEN len(channels) > 1 THEN 'cross-channel' ELSE 'single-channel' END AS journey,
               count(*) AS sessions, count(*) FILTER (WHERE len(products_bought) > 0) AS purchases,
               round(100.0 * count(*) FILTER (WHERE len(products_bought) > 0) / count(*), 2) AS conversion_pct
        FROM live_sessions GROUP BY ALL ORDER BY journey""",
    )


def revenue_by_currency(con: duckdb.DuckDBPyConnection) -> Frame:
    """Revenue per currency (major units) of single- and cross-channel sessions: one row per currency and
    journey, never a sum over currencies."""
    return run(
        con,
        """
        SELECT currency, CASE WHEN len(channels) > 1 THEN 'cross-channel' ELSE 'single-channel' END AS journey,
               count(*) FILTER (WHERE len(products_bought) > 0) AS purchasing_sessions,
               round(sum(revenue_minor) / 100, 2) AS revenue
        FROM live_sessions WHERE currency IS NOT NULL GROUP BY ALL ORDER BY currency, journey""",
    )


def top_paths(con: duckdb.DuckDBPyConnection, limit: int = 10) -> Frame:
    """The most frequent cross-channel paths (e.g. web>mobile>store) with their conversion."""
    return run(
        con,
        """
        SELECT channel_path AS path, count(*) AS sessions,
               round(100.0 * count(*) FILTER (WHERE len(products_bought) > 0) / count(*), 2) AS conversion_pct
        FROM live_sessions WHERE len(channels) > 1 GROUP BY ALL ORDER BY sessions DESC, path LIMIT ?""",
        [limit],
    )


def stage_over_time(con: duckdb.DuckDBPyConnection) -> Frame:
    """Customers per journey stage at the end of each day: the last transition of each customer up to that day."""
    return run(
        con,
        """
        WITH days AS (
            SELECT unnest(generate_series(min(CAST(event_time AS DATE)), max(CAST(event_time AS DATE)),
                                          INTERVAL 1 DAY)) AS day FROM journey_transitions),
        last AS (
            SELECT d.day, t.customer_id, arg_max(t.to_stage, t.seq) AS stage
            FROM days AS d JOIN journey_transitions AS t ON CAST(t.event_time AS DATE) <= d.day GROUP BY ALL)
        SELECT CAST(day AS DATE) AS day, stage, count(*) AS customers FROM last GROUP BY ALL ORDER BY day, stage""",
    )


def churn_risk(con: duckdb.DuckDBPyConnection, limit: int = 15) -> Frame:
    """Customers whose latest churn-risk signal is not holdout, lowest P(alive) first, with the reason."""
    return run(
        con,
        """
        SELECT g.customer_id, round(coalesce(c.p_alive, g.score), 3) AS p_alive,
               round(c.clv_minor / 100.0, 2) AS clv, c.currency, c.stage, arg_max(g.reason, g.event_time) AS reason,
               CAST(max(g.event_time) AS DATE) AS flagged
        FROM signals AS g LEFT JOIN customers AS c USING (customer_id)
        WHERE g.signal_type = 'churn_risk' AND NOT g.holdout
        GROUP BY ALL ORDER BY p_alive NULLS LAST, clv DESC NULLS LAST LIMIT ?""",
        [limit],
    )


def clv_segments(con: duckdb.DuckDBPyConnection) -> Frame:
    """Customers in CLV quintiles (1 = top 20%) per currency, with their CLV range and mean P(alive)."""
    return run(
        con,
        """
        WITH q AS (SELECT *, ntile(5) OVER (PARTITION BY currency ORDER BY clv_minor DESC) AS quintile
                   FROM customers WHERE clv_minor IS NOT NULL)
        SELECT CASE WHEN count(DISTINCT currency) OVER () > 1 THEN currency || ' ' ELSE '' END || 'Q' || quintile
                   AS segment, currency, count(*) AS customers, round(min(clv_minor) / 100, 2) AS clv_min,
               round(max(clv_minor) / 100, 2) AS clv_max, round(avg(p_alive), 3) AS mean_p_alive
        FROM q GROUP BY quintile, currency ORDER BY currency, quintile""",
    )


def rfm_segments(con: duckdb.DuckDBPyConnection) -> Frame:
    """Customers per RFM segment with mean purchase days; revenue per currency in ``revenue`` (major units of
    the customers' currency, ``<currency> <amount>; …`` when a segment has customers in several)."""
    return run(
        con,
        """
        WITH seg AS (
            SELECT coalesce(rfm_segment, 'unscored') AS segment, currency, count(*) AS customers,
                   sum(revenue_minor) AS revenue_minor, sum(purchase_days) AS purchase_days
            FROM customers GROUP BY ALL)
        SELECT segment, sum(customers) AS customers,
               coalesce(string_agg(currency || ' ' || printf('%,.2f', revenue_minor / 100), '; ' ORDER BY currency)
                        FILTER (WHERE currency IS NOT NULL), '-') AS revenue,
               round(sum(purchase_days) / sum(customers), 2) AS mean_purchase_days
        FROM seg GROUP BY segment ORDER BY customers DESC, segment""",
    )


def campaign_engagement(con: duckdb.DuckDBPyConnection, max_days: int = 28) -> Frame:
    """Per campaign and day since its start (first session carrying it): sessions, purchases, revenue.

    Shows whether engagement decays after a single announcement.
    """
    return run(
        con,
        """
        WITH e AS (SELECT *, min(start_ms) OVER (PARTITION BY campaign_id) AS started FROM campaign_exposures)
        SELECT campaign_id, datediff('day', CAST(started AS DATE), day) AS day_since_start,
               count(*) AS sessions, count(*) FILTER (WHERE converted) AS purchases
        FROM e WHERE datediff('day', CAST(started AS DATE), day) <= ?
        GROUP BY ALL ORDER BY campaign_id, day_since_start""",
        [max_days],
    )


def uplift_inputs(con: duckdb.DuckDBPyConnection) -> Frame:
    """Per signal type (or campaign): treated and holdout customers and how many bought within 7 days."""
    return run(
        con,
        """
        SELECT coalesce(campaign_id, signal_type) AS arm,
               count(*) FILTER (WHERE NOT holdout) AS treated, count(*) FILTER (WHERE NOT holdout AND converted_7d)
                   AS treated_converted,
               count(*) FILTER (WHERE holdout) AS holdout, count(*) FILTER (WHERE holdout AND converted_7d)
                   AS holdout_converted
        FROM campaign_outcomes GROUP BY ALL HAVING count(*) FILTER (WHERE holdout) > 0 ORDER BY arm""",
    )


def data_quality(con: duckdb.DuckDBPyConnection) -> Frame:
    """Failed events by type (late events are the ``late_event`` type), restated and merged sessions."""
    failed = run(con, "SELECT CAST(failure_type AS VARCHAR), count(*) FROM failed_events GROUP BY ALL ORDER BY 2 DESC")
    restated = run(
        con,
        """SELECT 'restated sessions (version > 1)', count(*) FILTER (WHERE version > 1 AND status <> 'merged')
           FROM sessions UNION ALL
           SELECT 'sessions merged into another', count(*) FILTER (WHERE status = 'merged') FROM sessions""",
    )
    rejects = run(con, "SELECT 'undecodable messages (sink rejects)', count(*) FROM _sink_rejects")
    rows = [(f"failed: {t}", n) for t, n in failed.rows] + restated.rows + rejects.rows
    return Frame(("check", "count"), rows)


def headline(con: duckdb.DuckDBPyConnection) -> Frame:
    """One row of totals: customers, sessions, purchasing sessions, signals, and revenue per currency
    (``<currency> <amount>; …`` in major units, i.e. minor units / 100: currencies are never added)."""
    return run(
        con,
        """SELECT (SELECT count(*) FROM customers) AS customers, count(*) AS sessions,
                  count(*) FILTER (WHERE len(products_bought) > 0) AS purchasing_sessions,
                  (SELECT count(*) FROM signals) AS signals,
                  (SELECT coalesce(string_agg(currency || ' ' || printf('%,.2f', r / 100), '; ' ORDER BY currency), '-')
                   FROM (SELECT currency, sum(revenue_minor) AS r FROM live_sessions
                         WHERE currency IS NOT NULL GROUP BY currency)) AS revenue
           FROM live_sessions""",
    )
