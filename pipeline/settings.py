"""One frozen settings object, read from ``OMNISTREAM_*`` environment variables (and an optional .env).

Every process builds it once at start-up and passes it down; nothing reads the environment later.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

CHANNELS: tuple[str, ...] = ("web", "mobile", "store", "social")

#: Default key for pseudonymising PII in development only: a worker or sink refuses it unless
#: ``OMNISTREAM_DEVELOPMENT`` is set (the demo and the tests set it).
DEV_PII_SECRET = "omnistream-dev-only-secret"
PREFIX = "OMNISTREAM_"
#: ``OMNISTREAM_*`` names that are not settings: deploy/compose.yaml interpolates them, no process reads them.
NOT_SETTINGS = frozenset({"OMNISTREAM_IMAGE_TAG", "OMNISTREAM_PII_SECRET_FILE"})


class UnknownSettingError(ValueError):
    """An ``OMNISTREAM_*`` variable that names no setting (a typo would otherwise be ignored silently)."""


class Settings(BaseSettings):
    """Configuration of every omnistream process. Field names map to ``OMNISTREAM_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="OMNISTREAM_", env_file=".env", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers, comma separated")
    topic_prefix: str = Field("", description="Prefix for every topic name, e.g. 'prod.' per environment")
    partitions: int = Field(4, ge=1, description="Partitions of the topics the project creates")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics (3 in prod)")
    app_id: str = Field("omnistream", description="Faust application id = consumer group prefix")
    # Security of every Kafka client (Faust and kafka-python); pipeline/security.py turns these into client
    # settings. Secrets are SecretStr (never printed) or files (Kubernetes/compose secrets).
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with SASL_PLAINTEXT / SASL_SSL)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (or use the _file variant)")
    kafka_sasl_password_file: Path | None = Field(None, description="File holding the SASL password")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle to verify the brokers (default: system CAs)")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client private key (mutual TLS)")

    # --- local broker (omnistream kafka up) ---------------------------------------------------------------
    kafka_version: str = Field("3.9.1", description="Apache Kafka version fetched from Maven Central")
    kafka_cache_dir: Path = Field(
        Path.home() / ".cache" / "omnistream",
        description="Where fetched broker jars are cached (outside git)",
    )
    state_dir: Path = Field(Path(".omnistream"), description="Broker data, worker state and logs")
    broker_port: int = Field(19092, description="Local broker client port")
    controller_port: int = Field(19093, description="Local KRaft controller port")
    broker_start_timeout_s: float = Field(90.0, description="How long `kafka up` waits for metadata")

    # --- ingest --------------------------------------------------------------------------------------------
    pii_secret: SecretStr = Field(SecretStr(DEV_PII_SECRET), description="HMAC key for email/phone")
    development: bool = Field(
        False, description="Allow the built-in development PII secret (demo, tests); never set it in production"
    )
    max_future_skew_s: float = Field(300.0, description="Reject events stamped further in the future")
    late_horizon_s: float = Field(400 * 86400.0, description="Reject events older than this (seconds)")
    max_event_bytes: int = Field(65536, description="Reject raw messages larger than this")
    failed_original_max_bytes: int = Field(
        262144, ge=0, description="A failed event keeps a larger original by reference only (broker size limit)"
    )
    dedup_capacity: int = Field(1_000_000, description="Event ids remembered per worker for dedup")
    invalid_ratio_limit: float = Field(0.5, gt=0, le=1, description="Stop when invalid share passes this")
    invalid_window: int = Field(2000, ge=10, description="Events in the invalid-share window")
    invalid_min_events: int = Field(500, ge=1, description="Window size before the guard may trip")
    schema_dir: Path | None = Field(None, description="Avro contracts directory (default: bundled)")
    schema_registry_url: str | None = Field(None, description="Confluent-compatible registry; else files")
    schema_registry_user: str | None = Field(None, description="Registry basic-auth user (or user:pass@ in the URL)")
    schema_registry_password: SecretStr | None = Field(None, description="Registry basic-auth password")
    input_retention_s: float = Field(
        7 * 86400.0, gt=0, description="Retention of the four channel topics (raw PII) when omnistream creates them"
    )
    metrics_bind: str = Field("0.0.0.0", description="Address /metrics listens on (127.0.0.1: this host only)")

    # --- event time (docs/time.md) -------------------------------------------------------------------------
    allowed_lateness_s: float = Field(
        43200.0, ge=0, description="How far behind its partition's progress an event may arrive and still count"
    )
    source_idle_s: float = Field(
        10.0, gt=0, description="A partition consumed to its end and silent this long stops holding the watermark"
    )
    align_ahead_s: float = Field(
        21600.0, gt=0, description="Pause reading an input partition whose progress is this far past the watermark"
    )

    # --- identity and sessions ----------------------------------------------------------------------------
    session_gap_s: float = Field(1800.0, description="Inactivity gap that ends a session (event time)")
    session_store_gap_s: float = Field(5400.0, description="Longer gap allowed when a store event is involved")
    session_max_duration_s: float = Field(43200.0, description="Sessions longer than this are split (bots)")
    identity_max_customers_per_identifier: int = Field(
        1, ge=1, description="Customers an identifier may be seen with before it counts as shared"
    )

    # --- warehouse sink (omnistream sink / sql / report) ---------------------------------------------------
    warehouse_path: Path | None = Field(None, description="Live DuckDB file (default <state_dir>/warehouse.duckdb)")
    snapshot_path: Path | None = Field(
        None, description="Snapshot readers open (default <state_dir>/warehouse.snapshot.duckdb)"
    )
    snapshot_interval_s: float = Field(10.0, gt=0, description="Seconds between snapshots = staleness bound")
    sink_batch_size: int = Field(50_000, ge=1, description="Messages per DuckDB transaction at most")
    sink_batch_max_ms: int = Field(1_000, ge=1, description="A sink batch is committed after this long at most")
    sink_metrics_port: int | None = Field(None, description="/metrics port of the sink (default metrics_port + 90)")
    sink_customer_events: bool = Field(False, description="Also store every canonical event (customer_events)")

    # --- journeys, signals, churn (docs/journeys.md) ------------------------------------------------------
    model_params_path: Path | None = Field(
        None, description="BTYD parameter file from `model fit` (none: no P(alive)/CLV)"
    )
    cart_abandon_s: float = Field(3600.0, gt=0, description="Cart with no purchase this long counts as abandoned")
    open_cart_window_s: float = Field(48 * 3600.0, gt=0, description="Store visit within this of an abandoned cart")
    trigger_cap_s: float = Field(86400.0, ge=0, description="At most one signal per customer and type in this time")
    holdout_share: float = Field(0.1, ge=0, lt=1, description="Share of customers held out per trigger/campaign")
    campaign_follow_up_days: float = Field(7.0, gt=0, description="Campaign touch then nothing this long: signal")
    churn_enter_p_alive: float = Field(0.3, gt=0, lt=1, description="P(alive) below this turns churn risk on")
    churn_exit_p_alive: float = Field(0.5, gt=0, lt=1, description="P(alive) above this turns churn risk off")
    journey_due_per_pass: int = Field(
        10_000, ge=1, description="Customers a journey pass runs for their timers alone (a midnight takes several)"
    )

    # --- processes -----------------------------------------------------------------------------------------
    metrics_port: int = Field(9464, description="Prometheus /metrics port of this process (0 = off)")
    web_port: int = Field(6066, description="Faust web port of a worker")
    worker_id: int = Field(0, ge=0, description="Index of this worker on the host (ports and state dirs)")
    commit_interval_s: float = Field(1.0, gt=0, description="How often a worker commits processed offsets")
    consumer_session_timeout_s: float = Field(
        6.0, ge=6, description="A worker silent this long loses its partitions to the others"
    )
    static_membership: bool = Field(
        False, description="Rejoin with the same partitions after a restart within the session timeout"
    )
    shutdown_timeout_s: float = Field(45.0, gt=0, description="SIGTERM: exit 70 if the clean stop takes longer")
    retry_budget_s: float = Field(
        300.0, ge=0, description="Kafka, registry and DuckDB errors are retried this long before a process exits 75"
    )
    input_delivery: Literal["batch", "stream"] = Field(
        "batch", description="How channel messages reach ingest: in lists from Faust's consumer, or Faust's streams"
    )
    event_loop: Literal["uvloop", "asyncio"] = Field("uvloop", description="Event loop of a worker's threads")
    log_level: str = Field("INFO", description="Log level")
    log_format: Literal["text", "json"] = Field("text", description="Log lines as text or one JSON object each")

    def topic(self, name: str) -> str:
        """Full topic name with the environment prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def input_topics(self) -> dict[str, str]:
        """Channel -> input topic name."""
        return {channel: self.topic(channel) for channel in CHANNELS}


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (CLI flags) taking precedence.

    An override of ``None`` is a flag that was not given: the environment or the default applies. Raises
    :class:`UnknownSettingError` for an ``OMNISTREAM_*`` variable (environment or ``.env``) that is no setting.
    """
    check_names({**_dotenv(Path(".env")), **os.environ})
    given = {name: value for name, value in overrides.items() if value is not None}
    return Settings(**given)  # type: ignore[arg-type]


def unsafe_secret(settings: Settings) -> str | None:
    """Why a worker or sink must not start with these settings (the development PII secret outside
    development), or None."""
    if settings.pii_secret.get_secret_value() == DEV_PII_SECRET and not settings.development:
        return (
            "OMNISTREAM_PII_SECRET is the built-in development secret: anyone can recompute the e-mail and phone "
            "digests with it. Set a secret of your own (docs/privacy.md), or OMNISTREAM_DEVELOPMENT=1 for a "
            "local trial"
        )
    return None


def check_names(environ: Mapping[str, str], settings: type[Settings] = Settings) -> None:
    """Refuse ``OMNISTREAM_*`` names that ``settings`` does not have, naming the closest valid one."""
    known = {PREFIX + name.upper() for name in settings.model_fields}
    unknown = sorted(n for n in environ if n.upper().startswith(PREFIX) and n.upper() not in known | NOT_SETTINGS)
    if not unknown:
        return
    hints = []
    stems = sorted(name.upper() for name in settings.model_fields)
    for name in unknown:
        close = difflib.get_close_matches(name.upper().removeprefix(PREFIX), stems, n=1, cutoff=0.7)
        hints.append(f"{name} (did you mean {PREFIX}{close[0]}?)" if close else name)
    raise UnknownSettingError(
        f"unknown setting{'s' if len(hints) > 1 else ''}: {'; '.join(hints)}. The settings are listed in README.md"
    )


def _dotenv(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v or "" for k, v in dotenv_values(path).items()}
