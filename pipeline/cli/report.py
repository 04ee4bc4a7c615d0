"""``omnistream report``: the marketing report from the warehouse snapshot, in the terminal or as HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.cli.formats import OutputFormat, write_csv, write_json
from pipeline.cli.sink import warehouse_snapshot_path
from pipeline.settings import load_settings


def report(
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML page with charts (works offline)")
    ] = None,
    snapshot: Annotated[
        Path | None, typer.Option(help="Snapshot to read (default: warehouse.snapshot.duckdb in the state dir)")
    ] = None,
    width: Annotated[int, typer.Option(min=60, help="Terminal width to lay the tables out for")] = 100,
    quiet: Annotated[bool, typer.Option(help="With --html: do not print the terminal report")] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table (the terminal report), json, or csv (one line per value)")
    ] = OutputFormat.table,
) -> None:
    """The marketing report from the warehouse snapshot: in the terminal, as HTML, or its numbers as JSON / CSV.

    Funnel by channel, cross- vs single-channel conversion, top paths, journey stages, churn risk, CLV and RFM
    segments, market basket (support/confidence/lift), campaign engagement and uplift vs holdout, data quality."""
    from pipeline.cli.warehouse import open_snapshot_or_exit
    from pipeline.reports import export, terminal
    from pipeline.reports import html as html_report
    from pipeline.reports.model import collect

    path = snapshot or warehouse_snapshot_path(load_settings())
    console = Console(width=width, stderr=output is not OutputFormat.table)  # status and errors off stdout
    con = open_snapshot_or_exit(path, console)
    with con, console.status("querying the warehouse snapshot"):
        data = collect(con)
    if output is OutputFormat.json:
        write_json(export.document(data))
    elif output is OutputFormat.csv:
        write_csv(export.LONG_COLUMNS, export.long_rows(data))
    elif not (html and quiet):
        terminal.render(data, console)
    if html:
        html.write_text(html_report.render(data), encoding="utf-8")
        if output is OutputFormat.table:
            console.print(f"HTML report written to {html}")
