"""The ``omnistream`` command line (also ``python -m pipeline``)."""

from __future__ import annotations

import typer

from pipeline.cli.demo import demo
from pipeline.cli.evaluate import evaluate_app
from pipeline.cli.kafka import kafka_app
from pipeline.cli.simulate import simulate
from pipeline.cli.worker import worker

app = typer.Typer(
    name="omnistream",
    help="Streaming omnichannel customer-event pipeline: Kafka in, identities, sessions and signals out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(evaluate_app, name="evaluate")
app.command()(simulate)
app.command()(worker)
app.command()(demo)


def main() -> None:
    """Console-script entry point."""
    app()
