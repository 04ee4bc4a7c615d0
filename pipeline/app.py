"""Faust application factory. Nothing connects or registers at import time: callers build the app."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from agents.identity import register_identity_writer
from agents.ingest import IngestOutputs, register_ingest_agent
from agents.journey import register_journey
from agents.publish import RetryPolicy
from pipeline.clock import Clock, SystemClock
from pipeline.domain.dedup import DedupWindow
from pipeline.domain.guard import InvalidRatioGuard
from pipeline.domain.identity_rules import KINDS, IdentityPolicy
from pipeline.domain.ingest import IngestPolicy
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.quarantine import Quarantine
from pipeline.domain.sessions_summary import SessionPolicy
from pipeline.faust_sensor import install_sensor
from pipeline.identity.replica import AssignmentReplica
from pipeline.metrics import IdentityMetrics, IngestMetrics, identity_metrics, ingest_metrics, journey_metrics
from pipeline.metrics_journey import journey_signal_metrics
from pipeline.security import faust_credentials, kafka_security, settings_client_config
from pipeline.settings import Settings
from pipeline.steps.identity import IdentityRouter, IdentityWriter
from pipeline.steps.ingest import IngestStep
from pipeline.steps.journey import JourneyStep
from pipeline.steps.journey_signals import JourneySignals, SignalsConfig
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry, SchemaRegistry
from schemas.registry_http import HttpSchemaRegistry


@dataclass(frozen=True)
class WorkerTuning:
    """Micro-batching knobs: larger batches amortise per-batch cost, ``within`` bounds added latency."""

    batch_size: int = 1000
    batch_within_s: float = 0.05


def build_registry(settings: Settings) -> SchemaRegistry:
    """The schema registry named by settings: a Confluent-compatible HTTP registry, or the bundled files."""
    if settings.schema_registry_url:
        return HttpSchemaRegistry(settings.schema_registry_url)
    return FileSchemaRegistry(settings.schema_dir)


def faust_broker_url(bootstrap: str) -> str:
    """Faust's broker URL list from a Kafka bootstrap string (``h1:p1,h2:p2``)."""
    return ";".join(f"kafka://{hostport.strip()}" for hostport in bootstrap.split(",") if hostport.strip())


def create_app(
    settings: Settings,
    registry: CollectorRegistry,
    clock: Clock | None = None,
    tuning: WorkerTuning | None = None,
) -> faust.App:
    """Build the worker's Faust app with every agent registered (nothing starts until the worker runs)."""
    clock = clock or SystemClock()
    tuning = tuning or WorkerTuning()
    datadir = Path(settings.state_dir) / f"worker-{settings.worker_id}"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=faust_broker_url(settings.kafka_bootstrap),
        datadir=str(datadir),
        autodiscover=False,
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Faust declares only its internal topics (table changelogs, leader); ours are pre-created.
        topic_allow_declare=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        # Agents send whole record batches per partition (agents/batching.py); 16 KB would split them.
        producer_max_batch_size=512 * 1024,
        # Bounded so that our own retry loop sees an outage and reports it instead of aiokafka waiting 20 min.
        producer_request_timeout=30.0,
        broker_commit_interval=settings.commit_interval_s,
        web_port=settings.web_port + settings.worker_id,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        broker_credentials=faust_credentials(kafka_security(settings)),
    )
    codec = AvroCodec(build_registry(settings))
    metrics = ingest_metrics(registry)
    policy = IngestPolicy.from_settings(settings)
    secret = settings.pii_secret.get_secret_value().encode()
    pseudonymiser = Pseudonymiser(secret)
    quarantine = Quarantine(secret)
    dedup = DedupWindow(settings.dedup_capacity)
    t = settings.topic
    replica = AssignmentReplica(settings.kafka_bootstrap, t("identity-assignments"), settings_client_config(settings))
    idm = identity_metrics(registry)
    router = IdentityRouter(replica, idm)
    outputs = IngestOutputs(
        _topic(app, t("customer-events")),
        _topic(app, t("failed-events")),
        _topic(app, t("resolved-events")),
        _topic(app, t("identity-links")),
    )
    for channel, topic_name in settings.input_topics.items():  # one agent per channel
        step = IngestStep(
            channel,
            topic_name,
            codec,
            policy,
            pseudonymiser,
            quarantine,
            dedup,
            InvalidRatioGuard(settings.invalid_window, settings.invalid_ratio_limit, settings.invalid_min_events),
            metrics,
            clock,
        )
        register_ingest_agent(
            app,
            step,
            router,
            replica,
            codec,
            outputs,
            metrics,
            RetryPolicy(),
            tuning.batch_size,
            tuning.batch_within_s,
        )
    register_identity_and_journey(app, settings, codec, quarantine, registry, clock, tuning, metrics, idm)
    consumed = [*settings.input_topics.values(), t("identity-links")]
    install_sensor(app, registry, [*consumed, t("resolved-events")])
    return app


def session_policy(settings: Settings) -> SessionPolicy:
    """The sessioniser's timing from settings (seconds -> milliseconds)."""
    idle = settings.session_idle_close_s
    return SessionPolicy(
        gap_ms=int(settings.session_gap_s * 1000),
        store_gap_ms=int(settings.session_store_gap_s * 1000),
        grace_ms=int(settings.session_grace_s * 1000),
        max_duration_ms=int(settings.session_max_duration_s * 1000),
        idle_close_ms=None if idle is None else int(idle * 1000),
    )


def register_identity_and_journey(
    app: faust.App, settings: Settings, codec: AvroCodec, quarantine: Quarantine, registry: CollectorRegistry,
    clock: Clock, tuning: WorkerTuning, metrics: IngestMetrics, idm: IdentityMetrics,
) -> None:  # fmt: skip
    """The single link writer and the journey (sessions) stage (routing runs in the ingest agents)."""
    t = settings.topic
    outputs = {
        "resolved": _topic(app, t("resolved-events")),
        "assignments": _topic(app, t("identity-assignments")),
        "merges": _topic(app, t("identity-merges")),
        "sessions": _topic(app, t("sessions")),
        "journey-stages": _topic(app, t("journey-stages")),
        "signals": _topic(app, t("signals")),
        "customer-profiles": _topic(app, t("customer-profiles")),
        "failed": _topic(app, t("failed-events")),
    }
    client = settings_client_config(settings)
    retry = RetryPolicy()
    limit = settings.identity_max_customers_per_identifier
    policy = IdentityPolicy({kind: limit for kind in KINDS if kind != "customer_id"})
    register_identity_writer(
        app, IdentityWriter(codec, policy, idm), settings.kafka_bootstrap, t("identity-links"), outputs,
        metrics.infra_retries, retry, tuning.batch_size, tuning.batch_within_s, client,
    )  # fmt: skip
    raw: Any = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    # Faust derives table serializers from key/value *types* (json unless bytes or a Record) when the table is
    # built, and the changelog topic and recovery decode with them: the types must say bytes from the start.
    # Raw bytes keep the changelog key identical to the resolved-events key, so both land on the same partition.
    table: Any = app.Table(
        "journey", default=None, key_type=bytes, value_type=bytes, schema=raw,
        partitions=settings.partitions, use_partitioner=True,
    )  # fmt: skip
    jm = journey_metrics(registry)
    sm = journey_signal_metrics(registry)
    signals = JourneySignals(signals_config(settings), codec, sm)
    step = JourneyStep(codec, session_policy(settings), jm, quarantine.seal, t("resolved-events"), signals)
    register_journey(
        app, step, table, t("resolved-events"), outputs, clock, metrics, jm, retry,
        tuning.batch_size, tuning.batch_within_s, settings.sweep_interval_s, sm,
    )  # fmt: skip


def signals_config(settings: Settings) -> SignalsConfig:
    """Trigger governance, the churn band and the fitted BTYD parameters (none configured: no P(alive)/CLV)."""
    from pipeline.domain.churn import ChurnPolicy
    from pipeline.domain.triggers import TriggerPolicy
    from pipeline.models.params import load

    hour = 3_600_000
    triggers = TriggerPolicy(
        abandon_ms=int(settings.cart_abandon_s * 1000), open_cart_ms=int(settings.open_cart_window_s * 1000),
        cap_ms=int(settings.trigger_cap_s * 1000), follow_up_ms=int(settings.campaign_follow_up_days * 24 * hour),
        holdout_share=settings.holdout_share,
    )  # fmt: skip
    churn = ChurnPolicy(settings.churn_enter_p_alive, settings.churn_exit_p_alive)
    params = load(settings.model_params_path) if settings.model_params_path else None
    return SignalsConfig(triggers, churn, params)


def _topic(app: faust.App, name: str) -> Any:
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
