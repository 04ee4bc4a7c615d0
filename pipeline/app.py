"""Faust application factory. Nothing connects or registers at import time: callers build the app."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from agents.align import Alignment
from agents.caught_up import CaughtUp
from agents.commit_marks import CommitMarks
from agents.commit_marks import install as install_commit_marks
from agents.cursor import install as install_gapless
from agents.delivery import BatchDelivery
from agents.delivery import install as install_delivery
from agents.identity import register_identity_writer
from agents.ingest import ChannelState, Committed, IdleSources, Ingest, IngestOutputs
from agents.journey import register_journey
from agents.publish import RetryPolicy
from pipeline.clock import Clock, SystemClock
from pipeline.domain.dedup import DedupWindow
from pipeline.domain.eventtime import Punctuality
from pipeline.domain.guard import InvalidRatioGuard
from pipeline.domain.identity_rules import KINDS, IdentityPolicy
from pipeline.domain.ingest import IngestPolicy
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.quarantine import Quarantine
from pipeline.domain.sessions_summary import SessionPolicy
from pipeline.faust_sensor import install_sensor
from pipeline.health import Health
from pipeline.identity.replica import AssignmentReplica
from pipeline.metrics import IdentityMetrics, IngestMetrics, identity_metrics, ingest_metrics, journey_metrics
from pipeline.metrics_journey import journey_signal_metrics
from pipeline.privacy.suppression import SuppressionReplica
from pipeline.privacy.tokens import Tokens
from pipeline.security import faust_credentials, kafka_security, settings_client_config
from pipeline.settings import Settings
from pipeline.steps.identity import IdentityRouter, IdentityWriter
from pipeline.steps.ingest import IngestStep
from pipeline.steps.journey import WRITER, JourneyStep, input_source
from pipeline.steps.journey_signals import JourneySignals, SignalsConfig
from pipeline.topics import journey_state_spec, topic_specs
from schemas.codec import AvroCodec
from schemas.from_settings import registry_from


@dataclass(frozen=True)
class WorkerTuning:
    """Micro-batching knobs: larger batches amortise per-batch cost, ``within`` bounds added latency."""

    batch_size: int = 1000
    # Faust's take() waits ``within`` after each batch, so every stage adds it to an event's latency. Ingest keeps
    # 50 ms: its per-batch cost (three produce round trips) showed in throughput at 20 ms. The writer's batches
    # are a few bundles and the journey's are capped by per-batch work at full load, so 20 ms costs them little.
    ingest_within_s: float = 0.05
    identity_within_s: float = 0.02
    journey_within_s: float = 0.02
    route_interval_s: float = 0.02  # how often held batches are checked against the identity writer's watermark
    align_interval_s: float = 0.1  # how often input partitions are paused or resumed by their progress
    caught_up_interval_s: float = 0.1  # how often partitions read to their end promise progress (agents/caught_up)


def worker_readiness(app: Any, replica: AssignmentReplica) -> str | None:
    """Why the worker is not ready to process (None: ready): it has joined its group and recovered its tables,
    is not rebalancing, and its identity replica has caught up."""
    if not app.tables.recovery.completed.is_set():
        return "waiting for partitions and table recovery"
    if app.in_recovery:
        return "recovering tables"
    if app.rebalancing:
        return "rebalancing"
    if not replica.caught_up:
        return "identity replica catching up"
    return None


def faust_broker_url(bootstrap: str) -> str:
    """Faust's broker URL list from a Kafka bootstrap string (``h1:p1,h2:p2``)."""
    return ";".join(f"kafka://{hostport.strip()}" for hostport in bootstrap.split(",") if hostport.strip())


def create_app(
    settings: Settings,
    registry: CollectorRegistry,
    clock: Clock | None = None,
    tuning: WorkerTuning | None = None,
    input_partitions: Mapping[str, int] | None = None,
    health: Health | None = None,
) -> faust.App:
    """Build the worker's Faust app with every agent registered (nothing starts until the worker runs).

    ``input_partitions``: partitions of each input topic (default ``settings.partitions``); every one is a
    source whose progress the watermarks wait for. ``health``: gets the worker's heartbeat (a timer on its event
    loop) and readiness check (pipeline/health.py)."""
    clock = clock or SystemClock()
    tuning = tuning or WorkerTuning()
    datadir = Path(settings.state_dir) / f"worker-{settings.worker_id}"
    datadir.mkdir(parents=True, exist_ok=True)
    instance = f"{settings.app_id}-{socket.gethostname()}-{settings.worker_id}" if settings.static_membership else None
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
        # A killed worker's partitions move to the others within the session timeout (docs/operations.md).
        broker_session_timeout=settings.consumer_session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.consumer_session_timeout_s / 8),
        consumer_group_instance_id=instance,
        # Ingest holds batches until the identity writer's watermark passes them, and agents pause during a
        # rebalance: waiting for every taken event to be acknowledged would stall the rebalance. Nothing is
        # lost without the wait: unacknowledged events are consumed again by the partition's next owner.
        stream_wait_empty=False,
        web_port=settings.web_port + settings.worker_id,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        broker_credentials=faust_credentials(kafka_security(settings)),
    )
    t = settings.topic
    partitions = dict(input_partitions or {}) or dict.fromkeys(settings.input_topics.values(), settings.partitions)
    sources = [input_source(topic, p) for topic, n in sorted(partitions.items()) for p in range(n)]
    client = settings_client_config(settings)
    marks = CommitMarks()
    install_commit_marks(app, marks)
    install_gapless()
    committed = Committed(settings.kafka_bootstrap, settings.app_id, client, marks)
    codec = AvroCodec(registry_from(settings))
    metrics = ingest_metrics(registry)
    for spec in topic_specs(settings):  # a series from the start: a dashboard shows 0, not "no data"
        if spec.name not in settings.input_topics.values():
            metrics.infra_retries.get(f"produce:{spec.name}")
    policy = IngestPolicy.from_settings(settings)
    secret = settings.pii_secret.get_secret_value().encode()
    pseudonymiser = Pseudonymiser(secret)
    quarantine = Quarantine(secret)
    dedup = DedupWindow(settings.dedup_capacity)
    replica = AssignmentReplica(settings.kafka_bootstrap, t("identity-assignments"), client)
    tokens = Tokens(secret)
    suppression = SuppressionReplica(settings.kafka_bootstrap, t("privacy-suppressions"), client)
    idm = identity_metrics(registry)
    router = IdentityRouter(replica, idm)
    outputs = IngestOutputs(
        _topic(app, t("customer-events")),
        _topic(app, t("failed-events")),
        _topic(app, t("resolved-events")),
        _topic(app, t("identity-links")),
        settings.partitions,
    )
    retry = RetryPolicy(budget_s=settings.retry_budget_s)
    lateness = int(settings.allowed_lateness_s * 1000)
    ingest = Ingest(router, replica, codec, outputs, committed, metrics, retry, clock, suppression=suppression)
    channels = []
    deliveries: dict[str, BatchDelivery] = {}  # none: Faust's per-event streams
    if settings.input_delivery == "batch":
        deliveries = {name: BatchDelivery(app, name) for name in settings.input_topics.values()}
        install_delivery(app, deliveries)
    for channel, topic_name in settings.input_topics.items():  # one agent per channel
        guard = InvalidRatioGuard(settings.invalid_window, settings.invalid_ratio_limit, settings.invalid_min_events)
        step = IngestStep(channel, topic_name, codec, policy, pseudonymiser, quarantine, dedup, guard, metrics, clock,
                          lateness, partial(tokens.event_erased, erased=suppression.nodes))  # fmt: skip
        state = ChannelState(step, punctuality=Punctuality(max(1, int(settings.source_idle_s * 1000))))
        channels.append(state)
        ingest.register(app, state, tuning.batch_size, tuning.ingest_within_s, deliveries.get(topic_name))
    idle = IdleSources(app, channels, outputs, codec, committed, settings.source_idle_s, retry, metrics)
    app.timer(interval=min(1.0, settings.source_idle_s / 4), name="idle-sources")(idle.check)
    caught_up = CaughtUp(app, channels, ingest, outputs, codec, retry, metrics, clock)
    app.timer(interval=tuning.caught_up_interval_s, name="caught-up-sources")(caught_up.check)
    align = Alignment(app, [(c.step, c.cursor) for c in channels], replica, int(settings.align_ahead_s * 1000),
                      metrics)  # fmt: skip

    async def align_inputs() -> None:
        align.check()

    app.timer(interval=tuning.align_interval_s, name="align-inputs")(align_inputs)

    async def route_held() -> None:
        await ingest.route(channels)

    app.timer(interval=tuning.route_interval_s, name="route-held")(route_held)
    if health is not None:
        beating = health

        async def heartbeat() -> None:  # on the event loop, the only thread that may read Faust's objects
            beating.beat(worker_readiness(app, replica))

        app.timer(interval=1.0, name="heartbeat")(heartbeat)
    register_identity_and_journey(app, settings, codec, quarantine, registry, clock, tuning, metrics, idm, sources,
                                  tokens, suppression)  # fmt: skip
    consumed = [*settings.input_topics.values(), t("identity-links")]
    install_sensor(app, registry, [*consumed, t("resolved-events")])
    return app


def session_policy(settings: Settings) -> SessionPolicy:
    """The sessioniser's timing from settings (seconds -> milliseconds); the grace is the allowed lateness."""
    return SessionPolicy(
        gap_ms=int(settings.session_gap_s * 1000),
        store_gap_ms=int(settings.session_store_gap_s * 1000),
        grace_ms=int(settings.allowed_lateness_s * 1000),
        max_duration_ms=int(settings.session_max_duration_s * 1000),
    )


def register_identity_and_journey(
    app: faust.App, settings: Settings, codec: AvroCodec, quarantine: Quarantine, registry: CollectorRegistry,
    clock: Clock, tuning: WorkerTuning, metrics: IngestMetrics, idm: IdentityMetrics, sources: list[str],
    tokens: Tokens, suppression: SuppressionReplica,
) -> None:  # fmt: skip
    """The single link writer and the journey stage (routing runs in the ingest agents)."""
    t = settings.topic
    outputs = {
        "resolved": _topic(app, t("resolved-events")),
        "assignments": _topic(app, t("identity-assignments")),
        "merges": _topic(app, t("identity-merges")),
        "sessions": _topic(app, t("sessions")),
        "journey-stages": _topic(app, t("journey-stages")),
        "signals": _topic(app, t("signals")),
        "customer-profiles": _topic(app, t("customer-profiles")),
        "order-lines": _topic(app, t("order-lines")),
        "failed": _topic(app, t("failed-events")),
    }
    client = settings_client_config(settings)
    retry = RetryPolicy(budget_s=settings.retry_budget_s)
    partitions = settings.partitions
    limit = settings.identity_max_customers_per_identifier
    policy = IdentityPolicy({kind: limit for kind in KINDS if kind != "customer_id"})
    writer = IdentityWriter(codec, policy, idm, sources, quarantine.seal, clock, tokens)
    register_identity_writer(
        app, writer, codec, settings.kafka_bootstrap, t("identity-links"), outputs, partitions, metrics.infra_retries,
        retry, tuning.batch_size, tuning.identity_within_s, client,
    )  # fmt: skip
    resolved = t("resolved-events")
    state_topic = _topic(app, journey_state_spec(settings).name)  # created by the worker at start
    jm = journey_metrics(registry)
    sm = journey_signal_metrics(registry)
    signals = JourneySignals(signals_config(settings), codec, sm, clock)

    def erased(profile: str) -> bool:
        return bool(suppression.profiles) and tokens.profile(profile) in suppression.profiles

    step = JourneyStep(codec, session_policy(settings), jm, quarantine.seal, resolved, [*sources, WRITER], signals,
                       clock, erased)  # fmt: skip
    register_journey(
        app, step, state_topic, resolved, outputs, codec, partitions, settings.kafka_bootstrap, client, metrics, jm,
        retry, tuning.batch_size, tuning.journey_within_s, sm, settings.journey_due_per_pass,
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
