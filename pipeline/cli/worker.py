"""``omnistream worker``: run the stream worker (Faust) with its Prometheus endpoint."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.settings import DEV_PII_SECRET, load_settings


def worker(
    worker_id: Annotated[
        int,
        typer.Option(help="Index of this worker on the host: offsets the metrics/web ports, own state dir"),
    ] = 0,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default from settings)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Base /metrics port; worker N serves on base+N")] = None,
    log_level: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Run one stream worker: ingest (decode, validate, pseudonymise, dedup) for every channel topic.

    Stops on SIGTERM/SIGINT after the current batch: outputs flushed, offsets of finished events committed.
    """
    import faust
    from prometheus_client import CollectorRegistry

    from pipeline.app import create_app
    from pipeline.logs import quiet_repeats
    from pipeline.metrics import serve_metrics

    overrides: dict[str, object] = {"worker_id": worker_id, "log_level": log_level}
    if bootstrap:
        overrides["kafka_bootstrap"] = bootstrap
    if metrics_port is not None:
        overrides["metrics_port"] = metrics_port
    settings = load_settings(**overrides)
    if settings.pii_secret.get_secret_value() == DEV_PII_SECRET:
        typer.secho(
            "warning: OMNISTREAM_PII_SECRET is the development default; set a real secret in production",
            fg="yellow",
            err=True,
        )
    registry = CollectorRegistry()
    if settings.metrics_port:
        serve_metrics(registry, settings.metrics_port + settings.worker_id)
    app = create_app(settings, registry)
    quiet_repeats()
    faust.Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()
