"""The ``omnistream`` command line (also ``python -m pipeline``)."""

from __future__ import annotations

import typer

from pipeline.cli.backfill import backfill
from pipeline.cli.demo import demo
from pipeline.cli.evaluate import evaluate_app
from pipeline.cli.kafka import kafka_app
from pipeline.cli.model import model_app
from pipeline.cli.report import report
from pipeline.cli.simulate import simulate
from pipeline.cli.sink import sink
from pipeline.cli.warehouse import export_app, sql
from pipeline.cli.worker import worker

app = typer.Typer(
    name="omnistream",
    help="Streaming omnichannel customer-event pipeline: Kafka in, identities, sessions and signals out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(model_app, name="model")
app.command()(simulate)
app.command()(worker)
app.command()(demo)
app.command()(backfill)
app.command()(sink)
app.command()(sql)
app.command()(report)
app.add_typer(export_app, name="export")


def main() -> None:
    """Console-script entry point."""
    app()
