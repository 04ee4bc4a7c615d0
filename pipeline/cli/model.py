"""``omnistream model fit``: fit BG/NBD (or modified BG/NBD) and Gamma-Gamma offline; write the parameter file."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.models.bgnbd import MBGNBD, VARIANTS
from pipeline.models.transactions import BadLine, Layout, LayoutError, Transaction, parse_day, read_transactions

model_app = typer.Typer(help="Buy-'til-you-die models for P(alive), expected purchases and CLV.", no_args_is_help=True)

#: What `--duckdb` reads unless `--query` says otherwise: one row per purchase (customer, day, amount).
DEFAULT_QUERY = "SELECT customer_id, CAST(event_time AS DATE) AS day, amount FROM purchases"


# The purchase source and model options that ``model fit`` and ``model validate`` share.
TransactionsOption = Annotated[Path | None, typer.Option(help="Purchase file (CSV or whitespace/CDNOW layout)")]
DuckdbOption = Annotated[Path | None, typer.Option("--duckdb", help="DuckDB file (a sink snapshot) to read")]
QueryOption = Annotated[str, typer.Option(help="SQL giving (customer, day, amount) rows from --duckdb")]
UnitDaysOption = Annotated[float, typer.Option(min=0.01, help="Model time unit in days (7 = weeks)")]
VariantOption = Annotated[str, typer.Option(help=f"One of {', '.join(VARIANTS)}")]
LayoutOption = Annotated[Layout, typer.Option(help="Column layout of --transactions (auto: told from the file)")]


def _from_duckdb(path: Path, query: str) -> list[Transaction]:
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise typer.BadParameter(f"cannot open {path} read-only: {exc}", param_hint="--duckdb") from exc
    try:
        rows = con.execute(query).fetchall()
    except duckdb.Error as exc:
        raise typer.BadParameter(
            f"query failed ({exc}); the database needs a purchases view with customer_id, "
            "event_time, amount, or pass --query",
            param_hint="--query",
        ) from exc
    finally:
        con.close()
    return [
        Transaction(str(c), d if isinstance(d, date) else parse_day(str(d)), float(a), None, n)
        for n, (c, d, a) in enumerate(rows, start=1)
    ]


def load_purchases(
    transactions: Path | None, duckdb_path: Path | None, query: str, layout: Layout, err: Console
) -> list[Transaction]:
    """The purchases of ``--transactions`` or ``--duckdb`` (exactly one); exit 2 for an ambiguous file layout,
    1 when there is no purchase."""
    if (transactions is None) == (duckdb_path is None):
        raise typer.BadParameter("give exactly one of --transactions and --duckdb")
    if transactions is not None:
        try:
            rows = list(read_transactions(transactions, layout))
        except LayoutError as exc:
            err.print(f"[red]{transactions}: {exc} (--layout)[/]", highlight=False)
            raise typer.Exit(2) from exc
        bad = [r for r in rows if isinstance(r, BadLine)]
        for b in bad[:5]:
            err.print(f"[yellow]skipped line {b.line}:[/] {b.reason}", highlight=False)
        if bad:
            err.print(f"{len(bad)} bad lines skipped of {len(rows)}")
        txs = [r for r in rows if isinstance(r, Transaction)]
    else:
        assert duckdb_path is not None
        txs = _from_duckdb(duckdb_path, query)
    if not txs:
        err.print("[red]no purchases to fit on[/]")
        raise typer.Exit(1)
    return txs


@model_app.command("fit")
def fit(
    transactions: TransactionsOption = None,
    duckdb_path: DuckdbOption = None,
    query: QueryOption = DEFAULT_QUERY,
    calibration_end: Annotated[
        str | None, typer.Option(help="Last day of the calibration period (default: last purchase day)")
    ] = None,
    unit_days: UnitDaysOption = 7.0,
    variant: VariantOption = MBGNBD,
    output: Annotated[
        Path | None,
        typer.Option(help="Parameter file (default: the model params path setting, else models/btyd.json)"),
    ] = None,
    version: Annotated[str | None, typer.Option(help="Version label (default: variant + UTC time)")] = None,
    layout: LayoutOption = Layout.auto,
) -> None:
    """Fit the models by maximum likelihood, write the versioned parameter file and print it as JSON."""
    from pipeline.models.fit import FitError, fit_model
    from pipeline.models.params import save
    from pipeline.models.transactions import summarise
    from pipeline.settings import load_settings

    err = Console(stderr=True, soft_wrap=True)
    if variant not in VARIANTS:
        raise typer.BadParameter(f"unknown variant {variant!r}", param_hint="--variant")
    txs = load_purchases(transactions, duckdb_path, query, layout, err)
    end = parse_day(calibration_end) if calibration_end else max(t.day for t in txs)
    summary = summarise(txs, end, unit_days)
    err.print(f"fitting {variant} on {len(summary.customers):,} customers, calibration ending {end}")
    try:
        params = fit_model(summary, end, unit_days, variant, version)
    except FitError as exc:
        err.print(f"[red]fit failed:[/] {exc}")
        raise typer.Exit(1) from exc
    path = output or load_settings().model_params_path or Path(".omnistream/models/btyd.json")
    save(params, path)
    err.print(f"parameters written to {path}")
    typer.echo(json.dumps(params.to_dict(), indent=2, sort_keys=True))
