"""``omnistream report``: the marketing report from the warehouse snapshot, in the terminal or as HTML."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pipeline.cli.formats import OutputFormat, write_csv, write_json
from pipeline.cli.sink import warehouse_snapshot_path
from pipeline.settings import load_settings

if TYPE_CHECKING:
    from pipeline.models.params import ModelParams


def report(
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML page with charts (works offline)")
    ] = None,
    snapshot: Annotated[
        Path | None, typer.Option(help="Snapshot to read (default: the warehouse snapshot in the state dir)")
    ] = None,
    width: Annotated[int, typer.Option(min=60, help="Terminal width to lay the tables out for")] = 100,
    quiet: Annotated[bool, typer.Option(help="With --html: do not print the terminal report")] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table (the terminal report), json, or csv (one line per value)")
    ] = OutputFormat.table,
    min_support: Annotated[
        float | None,
        typer.Option(help="Basket rules: minimum support (default: max(10 / baskets, 0.001))"),
    ] = None,
    min_confidence: Annotated[
        float | None, typer.Option(help="Basket rules: minimum confidence (default 0.05)")
    ] = None,
    min_lift: Annotated[
        float | None, typer.Option(help="Basket rules: minimum lift (default 1; lift <= 1 never shows)")
    ] = None,
) -> None:
    """The marketing report from the warehouse snapshot: in the terminal, as HTML, or its numbers as JSON / CSV.

    Funnel by channel, cross- vs single-channel conversion, top paths, journey stages, churn risk, CLV and RFM
    segments, market basket (support/confidence/lift), campaign engagement and uplift vs holdout, data quality.
    Sections carry caveats in words: small samples, a degenerate model fit, why a section is empty."""
    from pipeline.cli.warehouse import open_snapshot_or_exit
    from pipeline.reports import export, terminal
    from pipeline.reports import html as html_report
    from pipeline.reports.model import collect

    settings = load_settings()
    path = snapshot or warehouse_snapshot_path(settings)
    console = Console(width=width, stderr=output is not OutputFormat.table)  # status and errors off stdout
    params = _model_params(settings.model_params_path, console)
    con = open_snapshot_or_exit(path, console)
    with con, console.status("querying the warehouse snapshot"):
        try:
            data = collect(
                con, min_support=min_support, min_confidence=min_confidence, min_lift=min_lift, params=params
            )
        except ValueError as error:  # a threshold out of range: say which rule it breaks
            raise typer.BadParameter(str(error), param_hint="--min-support/--min-confidence/--min-lift") from error
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


def _model_params(path: Path | None, console: Console) -> ModelParams | None:
    """The parameters the workers score with (checked for a degenerate fit), or None without a readable file."""
    from pipeline.models.params import ModelFileError, load

    if path is None or not path.is_file():
        return None
    try:
        return load(path)
    except (ModelFileError, OSError, ValueError) as error:
        console.print(f"[yellow]model parameters {path} not checked[/]: {error}")
        return None
