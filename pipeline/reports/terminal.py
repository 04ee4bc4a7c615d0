"""The report in the terminal: rich tables, one per section, laid out for 100 columns.

Charts stay in the HTML report; here every section is a compact table (long ids and reasons are cut with an
ellipsis rather than wrapped, so a 100-column terminal shows one line per row).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from pipeline.reports.model import Report
from pipeline.reports.queries import Frame

WIDTH = 100


def render(report: Report, console: Console) -> None:
    """Print every section of ``report`` on ``console``."""
    when = report.published_at.strftime("%Y-%m-%d %H:%M:%S UTC") if report.published_at else "unknown"
    console.rule(f"[bold]omnistream marketing report[/] · snapshot {when}")
    console.print(_table("Headline", report.headline))
    console.print(_table("Funnel by channel (sessions → cart → checkout → purchase)", report.funnel))
    console.print(_table("Cross-channel vs single-channel journeys", report.cross_vs_single))
    console.print(_table("Top cross-channel paths", report.paths))
    console.print(_table("Journey stages (customers, latest day)", _latest_stages(report.stages)))
    console.print(_table("Churn risk (lowest P(alive) first)", report.churn, wide="reason"))
    console.print(_table("CLV segments (quintiles)", report.clv))
    console.print(_table("RFM segments", report.rfm))
    console.print(_table("Market basket: item pairs", report.rules))
    console.print(_table("Baskets spanning online and store in one session", report.baskets))
    console.print(_table("Campaign engagement after start (first 7 days)", _first_days(report.engagement, 7)))
    console.print(_uplift_table(report))
    console.print(_table("Data quality", report.quality))


def _table(title: str, frame: Frame, wide: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=False, width=None)
    if not frame.columns:
        table.add_column("")
        table.add_row("[dim]no data in this snapshot yet[/]")
        return table
    for name in frame.columns:
        numeric = bool(frame.rows) and isinstance(frame.rows[0][frame.columns.index(name)], int | float)
        table.add_column(
            name,
            justify="right" if numeric else "left",
            no_wrap=True,
            overflow="ellipsis",
            max_width=40 if name == wide else 22,
        )
    for row in frame.rows:
        table.add_row(*(_fmt(v) for v in row))
    return table


def _uplift_table(report: Report) -> Table:
    table = Table(title="Uplift vs randomised holdout (buy within 7 days)", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("arm", "treated", "holdout", "treat %", "hold %", "uplift pp", "95% CI pp", "sig"):
        table.add_column(name, justify="left" if name == "arm" else "right", no_wrap=True, max_width=24)
    if not report.uplifts:
        table.add_row("[dim]no signals with a holdout yet[/]", *[""] * 7)
    for u in report.uplifts:
        table.add_row(
            u.arm,
            str(u.treated),
            str(u.holdout),
            f"{100 * u.treated_rate:.1f}",
            f"{100 * u.holdout_rate:.1f}",
            f"{100 * u.uplift:+.1f}",
            f"[{100 * u.low:+.1f}, {100 * u.high:+.1f}]",
            "yes" if u.significant else "no",
        )
    return table


def _latest_stages(stages: Frame) -> Frame:
    if not stages.rows:
        return stages
    last = max(stages.column("day"))
    return Frame(("stage", "customers"), [(r[1], r[2]) for r in stages.rows if r[0] == last])


def _first_days(engagement: Frame, days: int) -> Frame:
    if not engagement.rows:
        return engagement
    i = engagement.columns.index("day_since_start")
    return Frame(engagement.columns, [r for r in engagement.rows if r[i] < days])


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if 0 < abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d")
    return str(value)
