"""The ``omnistream`` command line (also ``python -m pipeline``)."""

from __future__ import annotations

import inspect
import os

import typer

from pipeline.cli.backfill import backfill
from pipeline.cli.demo import demo
from pipeline.cli.evaluate import evaluate_app
from pipeline.cli.failed import failed_app
from pipeline.cli.kafka import kafka_app
from pipeline.cli.model import model_app
from pipeline.cli.model_validate import validate as _validate  # noqa: F401  (registers `model validate`)
from pipeline.cli.privacy import privacy_app
from pipeline.cli.report import report
from pipeline.cli.simulate import simulate
from pipeline.cli.sink import sink
from pipeline.cli.warehouse import export_app, sql
from pipeline.cli.worker import worker
from pipeline.settings import UnknownSettingError

app = typer.Typer(
    name="omnistream",
    help="Streaming omnichannel customer-event pipeline: Kafka in, identities, sessions and signals out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(failed_app, name="failed")
app.add_typer(model_app, name="model")
app.add_typer(privacy_app, name="privacy")
app.command()(simulate)
app.command()(worker)
app.command()(demo)
app.command()(backfill)
app.command()(sink)
app.command()(sql)
app.command()(report)
app.add_typer(export_app, name="export")


def reflow(text: str | None) -> str | None:
    """A docstring as help text: paragraphs kept, the line breaks inside a paragraph joined (the help is laid
    out for the terminal's width, not the source's)."""
    if text is None:
        return None
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _reflow_all(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        command.help = reflow(command.help or (command.callback.__doc__ if command.callback else None))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_all(group.typer_instance)


_reflow_all(app)


#: EX_CONFIG: a setting is misspelled, unknown or unsafe.
EXIT_CONFIG = 78


def main() -> None:
    """Console-script entry point. A misspelled setting stops any command with exit 78 and a suggestion.

    Every file a command creates (warehouse, snapshots, exports, worker state, the local broker's data) is
    readable by its owner only: they hold pseudonymised personal data."""
    os.umask(0o077)
    try:
        app()
    except UnknownSettingError as exc:
        typer.secho(f"omnistream: {exc}", fg="red", err=True)
        raise SystemExit(EXIT_CONFIG) from None
