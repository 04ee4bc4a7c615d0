"""Everything the report shows, gathered once from a snapshot: what the terminal and HTML renderers draw.

Collecting is separate from rendering so both outputs tell the same story from the same numbers, and so the
renderers are pure functions of a :class:`Report` (tests build one from a small warehouse).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import duckdb

from pipeline.models.checks import fit_caveats
from pipeline.models.params import ModelParams
from pipeline.reports import basket, caveats, queries
from pipeline.reports.basket import Thresholds
from pipeline.reports.queries import Frame
from pipeline.reports.uplift import Uplift, uplift
from sinks.snapshot import published_at_ms

#: Sections in the order the report shows them (keys of ``Report.notes``).
SECTIONS = ("headline", "funnel", "cross_vs_single", "revenue", "paths", "stages", "churn", "clv", "rfm",
            "basket", "engagement", "uplift", "quality")  # fmt: skip


@dataclass(frozen=True)
class Report:
    """The report's sections (see ``collect``); frames may be empty when a table is not there yet.

    ``notes`` holds, per section name (``SECTIONS``), the sentences a reader needs before trusting it: small
    samples, degenerate model fits, and why an empty section is empty (:mod:`pipeline.reports.caveats`)."""

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
    revenue: Frame = field(default_factory=lambda: Frame((), []))
    basket_limits: Thresholds | None = None
    notes: dict[str, list[str]] = field(default_factory=dict)

    def notes_for(self, section: str) -> list[str]:
        return self.notes.get(section, [])


def collect(
    con: duckdb.DuckDBPyConnection,
    rules_limit: int = 15,
    min_support: float | None = None,
    min_confidence: float | None = None,
    min_lift: float | None = None,
    params: ModelParams | None = None,
) -> Report:
    """Run every report query on ``con`` (a read-only snapshot). Basket thresholds left None take their
    defaults scaled to the number of baskets (:mod:`pipeline.reports.basket`); ``params`` are the model
    parameters the workers score with, checked for a degenerate fit."""
    ms = published_at_ms(con)
    limits = basket.thresholds(basket.basket_count(con), min_support, min_confidence, min_lift)
    inputs = queries.uplift_inputs(con)
    report = Report(
        published_at=dt.datetime.fromtimestamp(ms / 1000, dt.UTC) if ms is not None else None,
        headline=queries.headline(con),
        funnel=queries.funnel_by_channel(con),
        cross_vs_single=queries.cross_vs_single(con),
        paths=queries.top_paths(con),
        stages=queries.stage_over_time(con),
        churn=queries.churn_risk(con),
        clv=queries.clv_segments(con),
        rfm=queries.rfm_segments(con),
        rules=basket.top_rules(con, rules_limit, limits),
        baskets=basket.spanning_share(con),
        engagement=queries.campaign_engagement(con),
        uplifts=[uplift(*row) for row in inputs.rows],
        quality=queries.data_quality(con),
        revenue=queries.revenue_by_currency(con),
        basket_limits=limits,
    )
    return dataclasses.replace(report, notes=_notes(con, report, params))


def _notes(con: duckdb.DuckDBPyConnection, r: Report, params: ModelParams | None) -> dict[str, list[str]]:
    notes: dict[str, list[str]] = {s: [] for s in SECTIONS}
    frames = {"headline": r.headline, "funnel": r.funnel, "cross_vs_single": r.cross_vs_single,
              "revenue": r.revenue, "paths": r.paths, "stages": r.stages, "clv": r.clv, "rfm": r.rfm,
              "engagement": r.engagement, "quality": r.quality}  # fmt: skip
    for name, frame in frames.items():
        if not frame.rows or (name == "headline" and not frame.rows[0][1]):
            notes[name].append(caveats.empty_reason(name))
    notes["cross_vs_single"] += caveats.percentage_caveats(r.cross_vs_single, "journey", "sessions", "session")
    notes["paths"] += caveats.percentage_caveats(r.paths, "path", "sessions", "session")
    if not r.churn.rows:
        notes["churn"].append(caveats.churn_empty_reason(con))
    fit = fit_caveats(params)
    notes["churn"] += fit
    notes["clv"] += fit
    if r.clv.rows and len(set(zip(r.clv.column("clv_min"), r.clv.column("clv_max"), strict=True))) < len(r.clv.rows):
        notes["clv"].append(
            "Some quintiles have the same CLV range: many customers share one score (for example one-time "
            "buyers scored on the same day), so the split between those quintiles is arbitrary."
        )
    notes["basket"] += _basket_notes(r)
    notes["uplift"] += _uplift_notes(r)
    return {k: v for k, v in notes.items() if v}


def _basket_notes(r: Report) -> list[str]:
    limits = r.basket_limits
    if limits is None:
        return []
    out = [f"Rules shown: {limits.describe()}; highest lift first."]
    if limits.baskets == 0:
        out.append("No basket yet: a basket is the products bought in one session, and no session bought anything.")
    elif not r.rules.rows:
        out.append(
            "No pair of products reaches these thresholds with lift above 1: nothing is bought together more "
            "often than by chance at this volume (lower --min-support to look at rarer pairs)."
        )
    if 0 < limits.baskets < basket.MIN_PAIR_BASKETS:
        out.append(
            f"Only {limits.baskets:,} baskets, fewer than the {basket.MIN_PAIR_BASKETS} a pair needs to share "
            "before its lift means anything: the rules are not worth reading yet."
        )
    elif 0 < limits.baskets < 10 * basket.MIN_PAIR_BASKETS:
        out.append(
            f"Only {limits.baskets:,} baskets: support, confidence and lift are estimated from few baskets "
            "and can change a lot with more data."
        )
    return out


def _uplift_notes(r: Report) -> list[str]:
    if not r.uplifts:
        return [caveats.empty_reason("uplift")]
    out = []
    for u in r.uplifts:
        small = [f"{n} {group}" for group, n in (("treated", u.treated), ("held out", u.holdout))
                 if 0 < n < caveats.MIN_SAMPLE]  # fmt: skip
        if small:
            out.append(
                f"{u.arm}: only {' and '.join(small)} signals (fewer than {caveats.MIN_SAMPLE} in a group): "
                "the conversion rates are rough and the interval is wide."
            )
    return out
