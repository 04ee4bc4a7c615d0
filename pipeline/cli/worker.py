"""``omnistream worker``: run the stream worker (Faust) with its Prometheus endpoint."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Annotated, Any, NoReturn

import typer

from pipeline.settings import load_settings, unsafe_secret

#: Exit codes beyond the agents' own (agents/publish.py): a stop that overran its bound, refused credentials.
EXIT_SOFTWARE = 70  # EX_SOFTWARE: an unexpected error stopped the worker
EXIT_SHUTDOWN_TIMEOUT = 70  # EX_SOFTWARE too: the clean stop did not finish within OMNISTREAM_SHUTDOWN_TIMEOUT_S
EXIT_AUTH = 77  # EX_NOPERM: the brokers refused the configured credentials
EXIT_CONFIG = 78  # EX_CONFIG: security settings incomplete or unreadable
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the brokers did not answer at start-up


def worker(
    worker_id: Annotated[
        int | None,
        typer.Option(help="Index of this worker on the host: offsets the metrics/web ports, own state dir"),
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default from settings)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Base /metrics port; worker N serves on base+N")] = None,
    log_level: Annotated[str | None, typer.Option(help="Log level (default OMNISTREAM_LOG_LEVEL)")] = None,
) -> None:
    """Run one stream worker: ingest, identity and sessions for its share of the partitions.

    Several workers (on one host or many) with the same OMNISTREAM_APP_ID share the partitions; on one host give
    each its own --worker-id (ports base+N, state dir <state_dir>/worker-N). On SIGTERM/SIGINT the worker stops
    taking new batches, finishes the current one, flushes its outputs, commits the offsets and exits 0; if that
    takes longer than OMNISTREAM_SHUTDOWN_TIMEOUT_S it exits 70 (the uncommitted batch is replayed).
    """
    from prometheus_client import CollectorRegistry

    from pipeline.app import create_app
    from pipeline.health import Health, serve
    from pipeline.logs import quiet_repeats
    from pipeline.metrics import process_metrics
    from pipeline.security import KafkaAuthError, SecurityConfigError, check_connection, kafka_security

    settings = load_settings(
        worker_id=worker_id, kafka_bootstrap=bootstrap, metrics_port=metrics_port, log_level=log_level
    )
    unsafe = unsafe_secret(settings)
    if unsafe:
        _die(unsafe, EXIT_CONFIG)
    try:
        security = kafka_security(settings)
        check_connection(settings.kafka_bootstrap, security)
    except SecurityConfigError as exc:
        _die(f"Kafka security settings: {exc}", EXIT_CONFIG)
    except KafkaAuthError as exc:
        _die(str(exc), EXIT_AUTH)
    except ConnectionError as exc:
        _die(str(exc), EXIT_UNAVAILABLE)
    port = settings.metrics_port + settings.worker_id if settings.metrics_port else 0
    typer.echo(
        f"worker {settings.worker_id}: group {settings.app_id} on {settings.kafka_bootstrap} "
        f"({security.describe()}), metrics :{port or 'off'}, web :{settings.web_port + settings.worker_id}",
        err=True,
    )
    from pipeline.kafka_local import LocalKafkaError
    from pipeline.topics import ensure_journey_state_topic, partition_counts

    inputs = list(settings.input_topics.values())
    counts = partition_counts(settings, inputs)
    missing = [t for t in inputs if t not in counts]
    if missing:
        _die(f"input topics missing: {', '.join(missing)} (create them: omnistream kafka up)", EXIT_UNAVAILABLE)
    try:
        ensure_journey_state_topic(settings)
    except LocalKafkaError as exc:
        _die(f"journey state topic: {exc}", EXIT_UNAVAILABLE)
    except RuntimeError as exc:
        _die(str(exc), EXIT_CONFIG)
    registry = CollectorRegistry()
    process_metrics(registry, "worker")
    health = Health()
    if port:
        serve(registry, health, port, settings.metrics_bind)
    use_event_loop(settings.event_loop)
    app = create_app(settings, registry, input_partitions=counts, health=health)
    quiet_repeats()
    try:
        worker = bounded_worker(app, settings.log_level, settings.shutdown_timeout_s, settings.log_format)
        worker.execute_from_commandline()
    except SystemExit as stop:
        if stop.code == 1:  # Faust's exit after an unexpected error: the documented code for that is 70
            raise SystemExit(EXIT_SOFTWARE) from None
        raise


def use_event_loop(name: str) -> None:
    """Make every event loop created from now on (Faust's, and its consumer and producer threads') ``name``.
    uvloop does the same work as asyncio's selector loop with ~15 % less CPU for this worker's many small
    callbacks."""
    if name == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def bounded_worker(app: Any, log_level: str, shutdown_timeout_s: float, log_format: str = "text") -> Any:
    """A Faust worker whose stop on SIGTERM/SIGINT is bounded: after ``shutdown_timeout_s`` it exits 70.

    Faust's own stop waits for the agents to finish their batch and then commits; a batch stuck on a dead
    broker would otherwise keep the process (and a rolling deployment) waiting forever.
    """
    import faust

    class BoundedWorker(faust.Worker):
        def _schedule_shutdown(self, signal: Any) -> None:
            if not self._signal_stop_time:
                timer = threading.Timer(shutdown_timeout_s, _overran, args=(shutdown_timeout_s,))
                timer.daemon = True
                timer.start()
            super()._schedule_shutdown(signal)

    from pipeline.logs import logging_config

    return BoundedWorker(app, loglevel=log_level, quiet=True, logging_config=logging_config(log_format, log_level))


def _overran(timeout_s: float) -> None:
    print(f"omnistream worker: clean stop took longer than {timeout_s:.0f}s; exiting", file=sys.stderr, flush=True)
    os._exit(EXIT_SHUTDOWN_TIMEOUT)


def _die(message: str, code: int) -> NoReturn:
    typer.secho(f"omnistream worker: {message}", fg="red", err=True)
    raise typer.Exit(code)
