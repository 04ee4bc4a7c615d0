"""``omnistream sink``: the single DuckDB writer (Kafka -> warehouse, effectively-once rows, snapshots)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.settings import Settings, load_settings, unsafe_secret
from schemas.from_settings import registry_from

#: Exit codes: storage kept failing after retries (like the worker's publish outage), and a bug.
EXIT_INFRA = 75
EXIT_CONFIG = 78  # EX_CONFIG: unsafe settings (the development PII secret outside development)
EXIT_SOFTWARE = 70
#: Default offset of the sink's /metrics port from OMNISTREAM_METRICS_PORT (workers use base + worker id).
SINK_METRICS_PORT_OFFSET = 90


def sink(
    db: Annotated[
        Path | None, typer.Option("--db", help="Live DuckDB file (default: warehouse.duckdb in the state dir)")
    ] = None,
    snapshot: Annotated[
        Path | None,
        typer.Option(help="Read-only snapshot for readers (default: in the state dir)"),
    ] = None,
    snapshot_every: Annotated[
        float | None, typer.Option(min=0.5, help="Seconds between snapshots; also the staleness bound (default 10)")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Messages per transaction at most (50000)")] = None,
    batch_ms: Annotated[
        int | None, typer.Option(min=1, help="A batch is committed this many ms after it started at most (1000)")
    ] = None,
    tables: Annotated[
        str | None,
        typer.Option(help="Comma-separated tables to fill (default: all but customer_events, see settings)"),
    ] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default from settings)")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(help=f"/metrics port (default: the metrics port + {SINK_METRICS_PORT_OFFSET}; 0 = off)"),
    ] = None,
    retry_for: Annotated[
        float | None,
        typer.Option(
            min=0.0, help="Seconds to retry Kafka or DuckDB before exiting 75 (default: the retry budget setting)"
        ),
    ] = None,
    lag_commits: Annotated[
        bool, typer.Option(help="Also commit offsets to Kafka (group <app_id>-sink) for lag monitoring only")
    ] = True,
    log_level: Annotated[str, typer.Option(help="Log level")] = "INFO",
) -> None:
    """Consume the pipeline's output topics into the DuckDB warehouse and publish read-only snapshots.

    Each batch is ONE DuckDB transaction holding its rows and the Kafka offsets it covers; on start the sink
    resumes from those offsets, so rows are effectively-once even across kill -9. Every --snapshot-every
    seconds (and on shutdown) it atomically replaces the snapshot that `omnistream sql`, the duckdb CLI
    (`duckdb -readonly`) and BI tools open. SIGTERM/SIGINT: finish the batch, commit, publish, exit 0.
    Storage errors are retried for --retry-for seconds, then the sink exits 75 with nothing committed.
    DuckDB runs in a child process ("duckdb-writer") that dies with the sink, so Arrow conversion and DuckDB
    writes use two cores; if that child dies, the sink exits 75 and a restart resumes from the stored offsets.
    """
    from prometheus_client import CollectorRegistry

    from pipeline.health import Health, serve
    from pipeline.logs import quiet_repeats, setup_logging
    from pipeline.metrics import process_metrics
    from pipeline.security import settings_client_config
    from schemas.codec import AvroCodec
    from schemas.registry import SchemaRegistry
    from sinks.consumer import LoopConfig, SinkLoop
    from sinks.contract import SinkInfraError
    from sinks.metrics import sink_metrics
    from sinks.process_writer import ProcessWriter
    from sinks.tables import DEFAULT_TABLES, bind_tables

    settings = load_settings(log_level=log_level, kafka_bootstrap=bootstrap or None)
    unsafe = unsafe_secret(settings)
    if unsafe:
        typer.secho(f"omnistream sink: {unsafe}", fg="red", err=True)
        raise typer.Exit(EXIT_CONFIG)
    setup_logging(settings.log_format, settings.log_level)
    quiet_repeats()
    log = logging.getLogger("omnistream.sink")

    db_path = db or warehouse_path(settings)
    snapshot_path = snapshot or warehouse_snapshot_path(settings)
    if db_path.resolve() == snapshot_path.resolve():
        raise typer.BadParameter("the snapshot must be another file than the live database", param_hint="--snapshot")
    if tables:
        names = [n.strip() for n in tables.split(",") if n.strip()]
    else:
        names = list(DEFAULT_TABLES) + (["customer_events"] if settings.sink_customer_events else [])

    registry: SchemaRegistry = registry_from(settings)
    try:
        bound = bind_tables(names, settings.topic, registry)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--tables") from error

    metrics_registry = CollectorRegistry()
    metrics = sink_metrics(metrics_registry)
    process_metrics(metrics_registry, "sink")
    if metrics_port is not None:
        port = metrics_port
    elif settings.sink_metrics_port is not None:
        port = settings.sink_metrics_port
    else:
        port = _default_metrics_port(settings.metrics_port)
    health = Health()
    if port:
        serve(metrics_registry, health, port, settings.metrics_bind)

    # DuckDB runs in a child process (see sinks/process_writer.py), started by SinkLoop.run on this thread.
    budget = settings.retry_budget_s if retry_for is None else retry_for
    writer = ProcessWriter(db_path, snapshot_path, bound, metrics, retry_for_s=budget,
                           erasure_secret=settings.pii_secret.get_secret_value().encode())  # fmt: skip
    config = LoopConfig(
        bootstrap=settings.kafka_bootstrap,
        batch_size=batch_size or settings.sink_batch_size,
        batch_max_ms=batch_ms or settings.sink_batch_max_ms,
        snapshot_interval_s=snapshot_every or settings.snapshot_interval_s,
        lag_group=f"{settings.app_id}-sink" if lag_commits else None,
        client_config=settings_client_config(settings),
        retry_budget_s=budget,
        erasure_topic=settings.topic("privacy-suppressions"),
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        log.info("signal %s: finishing the current batch, then a final snapshot", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info(
        "sink: %s -> %s (snapshot %s every %.1fs, metrics port %s)",
        ", ".join(t.topic for t in bound),
        db_path,
        snapshot_path,
        config.snapshot_interval_s,
        port or "off",
    )
    try:

        def on_lag(lag: Mapping[str, int]) -> None:
            for table, behind in lag.items():
                metrics.lag.get(table).set(behind)

        loop = SinkLoop(config, writer, bound, AvroCodec(registry), on_beat=health.beat, on_lag=on_lag)
        health.check = loop.readiness
        loop.run(stop)
    except SinkInfraError as error:
        log.error("sink stopped, nothing of the failed batch committed: %s", error)
        sys.exit(EXIT_INFRA)
    except Exception:
        log.exception("sink stopped by an unexpected error; nothing of the failed batch committed")
        sys.exit(EXIT_SOFTWARE)


def warehouse_path(settings: Settings) -> Path:
    """The live DuckDB file the sink owns."""
    return settings.warehouse_path or Path(settings.state_dir) / "warehouse.duckdb"


def warehouse_snapshot_path(settings: Settings) -> Path:
    """The read-only snapshot every reader opens (``omnistream sql``, ``report``, BI tools)."""
    return settings.snapshot_path or Path(settings.state_dir) / "warehouse.snapshot.duckdb"


def _default_metrics_port(base: int) -> int:
    return base + SINK_METRICS_PORT_OFFSET if base else 0
