"""Everything the report shows, gathered once from a snapshot: what the terminal and HTML renderers draw.

Collecting is separate from rendering so both outputs tell the same story from the same numbers, and so the
renderers are pure functions of a :class:`Report` (tests build one from a small warehouse).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from pipeline.reports import basket, queries
from pipeline.reports.queries import Frame
from pipeline.reports.uplift import Uplift, uplift
from sinks.snapshot import published_at_ms


@dataclass(frozen=True)
class Report:
    """The report's sections (see ``collect``); frames may be empty when a table is not there yet."""

    published_at: dt.datetime | None
    headline: Frame
    funnel: Frame
    cross_vs_single: Frame
    paths: Frame
    stages: Frame
    churn: Frame
    clv: Frame
    rfm: Frame
    rules: Frame
    baskets: Frame
    engagement: Frame
    uplifts: list[Uplift] = field(default_factory=list)
    quality: Frame = field(default_factory=lambda: Frame((), []))


def collect(con: duckdb.DuckDBPyConnection, rules_limit: int = 15, min_support: float = 0.005) -> Report:
    """Run every report query on ``con`` (a read-only snapshot)."""
    ms = published_at_ms(con)
    rules = basket.pair_rules(con, min_support=min_support)
    inputs = queries.uplift_inputs(con)
    return Report(
        published_at=dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if ms is not None else None,
        headline=queries.headline(con),
        funnel=queries.funnel_by_channel(con),
        cross_vs_single=queries.cross_vs_single(con),
        paths=queries.top_paths(con),
        stages=queries.stage_over_time(con),
        churn=queries.churn_risk(con),
        clv=queries.clv_segments(con),
        rfm=queries.rfm_segments(con),
        rules=Frame(rules.columns, rules.rows[:rules_limit]),
        baskets=basket.spanning_share(con),
        engagement=queries.campaign_engagement(con),
        uplifts=[uplift(*row) for row in inputs.rows],
        quality=queries.data_quality(con),
    )
