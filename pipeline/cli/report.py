"""``omnistream report``: the marketing report from the warehouse snapshot, in the terminal or as HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cli.sink import warehouse_snapshot_path
from pipeline.settings import load_settings


def report(
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML page with charts (works offline)")
    ] = None,
    snapshot: Annotated[
        Path | None, typer.Option(help="Snapshot to read (default <state_dir>/warehouse.snapshot.duckdb)")
    ] = None,
    width: Annotated[int, typer.Option(min=60, help="Terminal width to lay the tables out for")] = 100,
    quiet: Annotated[bool, typer.Option(help="With --html: do not print the terminal report")] = False,
) -> None:
    """Funnel by channel, cross- vs single-channel conversion, top paths, journey stages, churn risk, CLV and RFM
    segments, market basket (support/confidence/lift), campaign engagement and uplift vs holdout, data quality."""
    from pipeline.cli.warehouse import open_snapshot_or_exit
    from pipeline.reports import html as html_report
    from pipeline.reports import terminal
    from pipeline.reports.model import collect

    path = snapshot or warehouse_snapshot_path(load_settings())
    console = Console(width=width)
    con = open_snapshot_or_exit(path, console)
    with con, console.status("querying the warehouse snapshot"):
        data = collect(con)
    if not (html and quiet):
        terminal.render(data, console)
    if html:
        html.write_text(html_report.render(data), encoding="utf-8")
        console.print(f"HTML report written to {html}")
