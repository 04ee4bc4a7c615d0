"""The report in the terminal: rich tables, one per section, laid out for 100 columns.

Charts stay in the HTML report; here every section is a compact table (long ids and reasons are cut with an
ellipsis rather than wrapped, so a 100-column terminal shows one line per row).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich import box
from rich.console import Console
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from pipeline.reports.model import Report
from pipeline.reports.queries import Frame

WIDTH = 100


def render(report: Report, console: Console) -> None:
    """Print every section of ``report`` on ``console``, each followed by its caveats in words."""
    when = report.published_at.strftime("%Y-%m-%d %H:%M:%S UTC") if report.published_at else "unknown"
    console.rule(f"[bold]omnistream marketing report[/] · snapshot {when}")
    money = "money in major units (minor / 100) of the currency shown"
    sections = (
        ("headline", _table(f"Headline ({money})", report.headline)),
        ("funnel", _table("Funnel by channel (sessions → cart → checkout → purchase)", report.funnel)),
        ("cross_vs_single", _table("Cross-channel vs single-channel journeys", report.cross_vs_single)),
        ("revenue", _table("Revenue by currency (major units)", report.revenue)),
        ("paths", _table("Top cross-channel paths", report.paths)),
        ("stages", _table("Journey stages (customers, latest day)", _latest_stages(report.stages))),
        ("churn", _table("Churn risk (lowest P(alive) first; CLV in major units)", report.churn, wide="reason")),
        ("clv", _table("CLV segments (quintiles per currency, major units)", report.clv)),
        ("rfm", _table("RFM segments (revenue per currency, major units)", report.rfm)),
        ("basket", _table("Market basket: item pairs bought together", report.rules)),
        ("", _table("Baskets spanning online and store in one session", report.baskets)),
        ("engagement", _table("Campaign engagement after start (first 7 days)", _first_days(report.engagement, 7))),
        ("uplift", _uplift_table(report)),
        ("quality", _table("Data quality", report.quality)),
    )
    for name, table in sections:
        console.print(table)
        for note in report.notes_for(name) if name else ():
            console.print(Padding(Text(note, style="dim"), (0, 0, 0, 2)))


def _table(title: str, frame: Frame, wide: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, expand=False, width=None)
    if not frame.columns:
        table.add_column("")
        table.add_row("[dim]not in this snapshot (see the note below)[/]")
        return table
    for i, name in enumerate(frame.columns):
        numeric = bool(frame.rows) and isinstance(frame.rows[0][i], int | float)
        values = max((len(_fmt(r[i])) for r in frame.rows), default=0)
        table.add_column(
            name,
            justify="right" if numeric else "left",
            no_wrap=True,
            overflow="ellipsis",
            max_width=40 if name == wide else 22,
            # Numbers, codes and dates are never cut: only long text (ids, reasons) gives way.
            min_width=min(values, 12) if numeric or values <= 12 else None,
        )
    for row in frame.rows:
        table.add_row(*(_fmt(v) for v in row))
    return table


def _uplift_table(report: Report) -> Table:
    table = Table(title="Uplift vs randomised holdout (buy within 7 days)", title_justify="left", box=box.SIMPLE_HEAD)
    for name in ("arm", "treated", "holdout", "treat %", "hold %", "uplift pp", "95% CI pp", "sig"):
        table.add_column(name, justify="left" if name == "arm" else "right", no_wrap=True, max_width=24)
    if not report.uplifts:
        table.add_row("[dim]none (see below)[/]", *[""] * 7)
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
