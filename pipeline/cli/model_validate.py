"""``omnistream model validate``: calibration/holdout check of the purchase model, by frequency bucket."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.cli.formats import OutputFormat, console_for
from pipeline.cli.model import (
    DEFAULT_QUERY,
    DuckdbOption,
    LayoutOption,
    QueryOption,
    TransactionsOption,
    UnitDaysOption,
    VariantOption,
    load_purchases,
    model_app,
)
from pipeline.models.bgnbd import MBGNBD, VARIANTS
from pipeline.models.transactions import Layout, parse_day


@model_app.command("validate")
def validate(
    calibration_end: Annotated[str, typer.Option(help="Last day of the calibration period (YYYY-MM-DD)")],
    transactions: TransactionsOption = None,
    duckdb_path: DuckdbOption = None,
    query: QueryOption = DEFAULT_QUERY,
    holdout_end: Annotated[
        str | None, typer.Option(help="Last day of the holdout period (default: the last purchase day)")
    ] = None,
    unit_days: UnitDaysOption = 7.0,
    variant: VariantOption = MBGNBD,
    layout: LayoutOption = Layout.auto,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json")] = OutputFormat.table,
) -> None:
    """Fit on the purchases up to --calibration-end, predict each customer's purchase days in the holdout period
    and compare with what they did, grouped by repeat purchases in the calibration period (as the BG/NBD paper's
    CDNOW tables). Warns when the fit is degenerate."""
    from pipeline.models.validate import validate as run

    err = Console(stderr=True, soft_wrap=True)
    if variant not in VARIANTS:
        raise typer.BadParameter(f"unknown variant {variant!r}", param_hint="--variant")
    if output is OutputFormat.csv:
        raise typer.BadParameter("validate prints a table or json", param_hint="--format")
    txs = load_purchases(transactions, duckdb_path, query, layout, err)
    end = parse_day(calibration_end)
    holdout = parse_day(holdout_end) if holdout_end else max(t.day for t in txs)
    try:
        result = run(txs, end, holdout, unit_days, variant)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--calibration-end") from exc
    console = console_for()
    if output is OutputFormat.json:
        doc = {"params": result.params.to_dict(), "holdout_end": str(holdout), "actual_total": result.actual_total,
               "predicted_total": result.predicted_total, "total_error_pct": result.total_error_pct,
               "buckets": [{"repeat_purchases": b.label, "customers": b.customers, "actual": b.actual,
                            "predicted": b.predicted, "error": b.error} for b in result.buckets],
               "warnings": result.warnings}  # fmt: skip
        typer.echo(json.dumps(doc, indent=2))
        return
    bg = result.params.bg
    console.print(f"{variant} fitted on {result.params.customers:,} customers up to {end}: r {bg.r:.4g}, alpha "
                  f"{bg.alpha:.4g}, a {bg.a:.4g}, b {bg.b:.4g}; holdout {end} .. {holdout}")  # fmt: skip
    table = Table("repeat purchases in calibration", "customers", "actual per customer", "predicted per customer",
                  "error")  # fmt: skip
    for b in result.buckets:
        table.add_row(b.label, f"{b.customers:,}", f"{b.actual:.3f}", f"{b.predicted:.3f}", f"{b.error:+.3f}")
    console.print(table)
    console.print(f"purchase days in the holdout period: actual {result.actual_total:,}, predicted "
                  f"{result.predicted_total:,.1f} ({result.total_error_pct:+.1f} %)")  # fmt: skip
    for warning in result.warnings:
        console.print(f"[yellow]{warning}[/]")
