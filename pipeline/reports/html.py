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

# Readable from 700 px up: charts scale with the page, wide tables scroll inside their own box, never the page.
_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px;padding:0 12px;color:#222}
h1{font-size:22px}h2{font-size:17px;margin-top:32px;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{padding:3px 8px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right}figure{margin:8px 0}.note{color:#666;font-size:12px}
p.caveat{background:#fff8e1;border-left:3px solid #f0b400;padding:4px 8px;font-size:12px;margin:6px 0}
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
  document.body.dataset.pageWidth = String(document.documentElement.scrollWidth);
});
"""


def render(report: Report) -> str:
    """The whole page for ``report``."""
    when = report.published_at.strftime("%Y-%m-%d %H:%M:%S UTC") if report.published_at else "unknown"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'><title>omnistream report</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>omnistream marketing report</h1><p class='note'>Warehouse snapshot published {escape(when)}. "
        "Money in major units (minor units / 100) beside its currency; currencies are never added.</p>",
        _table(report.headline) + _notes(report, "headline"),
        _section(report, "Funnel by channel", "funnel", _funnel(report.funnel), report.funnel),
        _section(
            report,
            "Cross-channel vs single-channel",
            "cross_vs_single",
            _bars_of(report.cross_vs_single, "journey", "conversion_pct", "journey", "conversion (% of sessions)"),
            report.cross_vs_single,
        ),
        f"<h2>Revenue by currency</h2>{_table(report.revenue)}{_notes(report, 'revenue')}",
        _section(
            report,
            "Top cross-channel paths",
            "paths",
            _hbars_of(report.paths, "path", "sessions", "sessions (count)"),
            report.paths,
        ),
        _section(report, "Journey stages over time", "stages", _stages(report.stages), None),
        f"<h2>Churn risk</h2>{_table(report.churn)}{_notes(report, 'churn')}",
        _section(
            report,
            "CLV segments",
            "clv",
            _hbars_of(report.clv, "segment", "customers", "customers (count)"),
            report.clv,
        ),
        _section(
            report,
            "RFM segments",
            "rfm",
            _hbars_of(report.rfm, "segment", "customers", "customers (count)"),
            report.rfm,
        ),
        _section(
            report,
            "Market basket: item pairs bought together, by lift",
            "basket",
            _basket(report.rules),
            report.rules,
            after=_table(report.baskets),
        ),
        _section(report, "Campaign engagement after start", "engagement", _engagement(report.engagement), None),
        _section(
            report,
            "Uplift vs randomised holdout (bought within 7 days, 95% CI)",
            "uplift",
            _uplift(report),
            None,
            after=_uplift_table(report),
        ),
        _section(
            report,
            "Data quality",
            "quality",
            _hbars_of(report.quality, "check", "count", "messages or sessions (count)"),
            report.quality,
        ),
        f"<script>{_CHECK}</script></body></html>",
    ]
    return "\n".join(parts)


def _section(report: Report, title: str, name: str, chart: str, frame: Frame | None, after: str = "") -> str:
    body = chart or "<p class='note'>Nothing to chart (see below).</p>"
    table = _table(frame) if frame is not None else ""
    return f"<h2>{escape(title)}</h2><figure class='chart' data-chart='{name}'>{body}</figure>{table}{after}" + _notes(
        report, name
    )


def _notes(report: Report, section: str) -> str:
    return "".join(f"<p class='caveat'>{escape(n)}</p>" for n in report.notes_for(section))


def _table(frame: Frame) -> str:
    if not frame.columns or not frame.rows:
        return ""
    head = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in frame.rows)
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


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
    return svg.grouped_bars(
        channels, {s: frame.column(s) for s in FUNNEL_STEPS}, "funnel by channel", "channel", "sessions (count)"
    )


def _bars_of(frame: Frame, cat: str, value: str, x_title: str, y_title: str) -> str:
    if not frame.rows:
        return ""
    values = [float(v or 0) for v in frame.column(value)]
    return svg.grouped_bars([str(c) for c in frame.column(cat)], {y_title: values}, y_title, x_title, y_title)


def _hbars_of(frame: Frame, cat: str, value: str, x_title: str) -> str:
    if not frame.rows:
        return ""
    return svg.hbars([str(c) for c in frame.column(cat)], [float(v or 0) for v in frame.column(value)], cat, x_title)


def _stages(frame: Frame) -> str:
    if not frame.rows:
        return ""
    days = sorted({r[0] for r in frame.rows})
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(days))
    index = {d: i for i, d in enumerate(days)}
    for day, stage, n in frame.rows:
        series[str(stage)][index[day]] = float(n)
    return svg.lines(
        [str(d)[5:] for d in days],
        dict(series),
        "journey stages over time",
        "day (event time, UTC, MM-DD)",
        "customers (count, stacked)",
        stacked=True,
    )


def _basket(rules: Frame) -> str:
    if not rules.rows:
        return ""
    labels = [f"{a} → {b}" for a, b in zip(rules.column("antecedent"), rules.column("consequent"), strict=True)]
    return svg.hbars(
        labels, [float(v) for v in rules.column("lift")], "lift", "lift (times the chance of buying together)"
    )


def _engagement(frame: Frame) -> str:
    if not frame.rows:
        return ""
    days = sorted({int(r[1]) for r in frame.rows})
    series: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(days))
    for campaign, day, sessions, *_ in frame.rows:
        series[str(campaign)][days.index(int(day))] = float(sessions)
    return svg.lines(
        [f"d{d}" for d in days],
        dict(series),
        "sessions per day since campaign start",
        "days since the campaign's first session (event time)",
        "sessions (count)",
    )


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
