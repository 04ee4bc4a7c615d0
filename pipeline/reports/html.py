"""The report as one self-contained HTML page: inline SVG charts and tables, no network, no external files.

Each chart is a ``<figure class="chart" data-chart="<name>">``. A few lines of inline script check, once the
page has rendered, that every chart has data marks with a real on-screen size and record the count in
``data-marks`` (and ``document.body.dataset.charts``): the headless-browser test reads them back. The page is
fully readable without the script; it only reports.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import Any

from pipeline.reports import svg
from pipeline.reports.model import Report
from pipeline.reports.queries import FUNNEL_STEPS, Frame

CHARTS = ("funnel", "cross_vs_single", "paths", "stages", "clv", "rfm", "basket", "engagement", "uplift", "quality")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{padding:3px 8px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right}figure{margin:8px 0}.note{color:#666;font-size:12px}
"""
_CHECK = """
window.addEventListener('load', function () {
  var ok = 0;
  document.querySelectorAll('figure.chart').forEach(function (fig) {
    var n = 0;
    fig.querySelectorAll('.mark').forEach(function (m) {
      var b = m.getBoundingClientRect(); if (b.width > 0 || b.height > 0) { n++; }
    });
    fig.dataset.marks = String(n); if (n > 0) { ok++; }
  });
  document.body.dataset.charts = String(ok);
});
"""


def render(report: Report) -> str:
    """The whole page for ``report``."""
    when = report.published_at.strftime("%Y-%m-%d %H:%M:%S UTC") if report.published_at else "unknown"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>omnistream report</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>omnistream marketing report</h1><p class='note'>Warehouse snapshot published {escape(when)}.</p>",
        _table(report.headline),
        _section("Funnel by channel", "funnel", _funnel(report.funnel), report.funnel),
        _section(
            "Cross-channel vs single-channel",
            "cross_vs_single",
            _bars_of(report.cross_vs_single, "journey", "conversion_pct", "conversion %"),
            report.cross_vs_single,
        ),
        _section("Top cross-channel paths", "paths", _hbars_of(report.paths, "path", "sessions"), report.paths),
        _section("Journey stages over time", "stages", _stages(report.stages), None),
        "<h2>Churn risk</h2>" + _table(report.churn),
        _section("CLV segments", "clv", _hbars_of(report.clv, "segment", "customers"), report.clv),
        _section("RFM segments", "rfm", _hbars_of(report.rfm, "segment", "customers"), report.rfm),
        _section("Market basket: item pairs by lift", "basket", _basket(report.rules), report.rules)
        + _table(report.baskets),
        _section("Campaign engagement after start", "engagement", _engagement(report.engagement), None),
        _section("Uplift vs randomised holdout (bought within 7 days, 95% CI)", "uplift", _uplift(report), None)
        + _uplift_table(report),
        _section("Data quality", "quality", _hbars_of(report.quality, "check", "count"), report.quality),
        f"<script>{_CHECK}</script></body></html>",
    ]
    return "\n".join(parts)


def _section(title: str, name: str, chart: str, frame: Frame | None) -> str:
    body = chart or "<p class='note'>No data in this snapshot yet.</p>"
    table = _table(frame) if frame is not None else ""
    return f"<h2>{escape(title)}</h2><figure class='chart' data-chart='{name}'>{body}</figure>{table}"


def _table(frame: Frame) -> str:
    if not frame.columns:
        return ""
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in frame.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"<td class='n'>{value:,.4f}</td>" if 0 < abs(value) < 1 else f"<td class='n'>{value:,.2f}</td>"
    if isinstance(value, int):
        return f"<td class='n'>{value:,}</td>"
    return f"<td>{escape('' if value is None else str(value))}</td>"


def _funnel(frame: Frame) -> str:
    if not frame.rows:
        return ""
    channels = [str(c) for c in frame.column("channel")]
    return svg.grouped_bars(channels, {s: frame.column(s) for s in FUNNEL_STEPS}, "funnel by channel")


def _bars_of(frame: Frame, cat: str, value: str, name: str) -> str:
    if not frame.rows:
        return ""
    return svg.grouped_bars([str(c) for c in frame.column(cat)], {name: frame.column(value)}, name)


def _hbars_of(frame: Frame, cat: str, value: str) -> str:
    if not frame.rows:
        return ""
    return svg.hbars([str(c) for c in frame.column(cat)], [float(v or 0) for v in frame.column(value)], cat)


def _stages(frame: Frame) -> str:
    if not frame.rows:
        return ""
    days = sorted({r[0] for r in frame.rows})
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(days))
    index = {d: i for i, d in enumerate(days)}
    for day, stage, n in frame.rows:
        series[str(stage)][index[day]] = float(n)
    return svg.lines([str(d)[5:] for d in days], dict(series), "journey stages over time (MM-DD)", stacked=True)


def _basket(rules: Frame) -> str:
    if not rules.rows:
        return ""
    labels = [f"{a} → {b}" for a, b in zip(rules.column("antecedent"), rules.column("consequent"), strict=True)]
    return svg.hbars(labels, [float(v) for v in rules.column("lift")], "lift")


def _engagement(frame: Frame) -> str:
    if not frame.rows:
        return ""
    days = sorted({int(r[1]) for r in frame.rows})
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(days))
    for campaign, day, sessions, *_ in frame.rows:
        series[str(campaign)][days.index(int(day))] = float(sessions)
    return svg.lines([f"d{d}" for d in days], dict(series), "sessions per day since campaign start")


def _uplift(report: Report) -> str:
    if not report.uplifts:
        return ""
    u = report.uplifts
    return svg.intervals(
        [x.arm for x in u], [100 * x.uplift for x in u], [100 * x.low for x in u], [100 * x.high for x in u]
    )


def _uplift_table(report: Report) -> str:
    rows = [
        (
            u.arm,
            u.treated,
            u.holdout,
            100 * u.treated_rate,
            100 * u.holdout_rate,
            100 * u.uplift,
            100 * u.low,
            100 * u.high,
        )
        for u in report.uplifts
    ]
    cols = ("arm", "treated", "holdout", "treated %", "holdout %", "uplift pp", "CI low pp", "CI high pp")
    return _table(Frame(cols, rows))
