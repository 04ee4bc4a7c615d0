"""One frozen settings object, read from ``OMNISTREAM_*`` environment variables (and an optional .env).

Every process builds it once at start-up and passes it down; nothing reads the environment later.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

CHANNELS: tuple[str, ...] = ("web", "mobile", "store", "social")

#: Default key for pseudonymising PII in development only; `worker` warns when it is still in use.
DEV_PII_SECRET = "omnistream-dev-only-secret"


class Settings(BaseSettings):
    """Configuration of every omnistream process. Field names map to ``OMNISTREAM_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="OMNISTREAM_", env_file=".env", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers, comma separated")
    topic_prefix: str = Field("", description="Prefix for every topic name, e.g. 'prod.' per environment")
    partitions: int = Field(4, ge=1, description="Partitions of the topics the project creates")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics (3 in prod)")
    app_id: str = Field("omnistream", description="Faust application id = consumer group prefix")

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
    max_future_skew_s: float = Field(300.0, description="Reject events stamped further in the future")
    late_horizon_s: float = Field(400 * 86400.0, description="Reject events older than this (seconds)")
    max_event_bytes: int = Field(65536, description="Reject raw messages larger than this")
    dedup_capacity: int = Field(1_000_000, description="Event ids remembered per worker for dedup")
    invalid_ratio_limit: float = Field(0.5, gt=0, le=1, description="Stop when invalid share passes this")
    invalid_window: int = Field(2000, ge=10, description="Events in the invalid-share window")
    invalid_min_events: int = Field(500, ge=1, description="Window size before the guard may trip")
    schema_dir: Path | None = Field(None, description="Avro contracts directory (default: bundled)")
    schema_registry_url: str | None = Field(None, description="Confluent-compatible registry; else files")

    # --- identity and sessions ----------------------------------------------------------------------------
    session_gap_s: float = Field(1800.0, description="Inactivity gap that ends a session (event time)")
    session_store_gap_s: float = Field(5400.0, description="Longer gap allowed when a store event is involved")
    session_grace_s: float = Field(7200.0, description="How late an event may arrive and still be placed")
    session_max_duration_s: float = Field(43200.0, description="Sessions longer than this are split (bots)")
    session_idle_close_s: float | None = Field(None, description="Silence that closes a session (default gap+grace)")
    sweep_interval_s: float = Field(60.0, gt=0, description="How often the timer sweep closes silent sessions")
    identity_max_customers_per_identifier: int = Field(
        1, ge=1, description="Customers an identifier may be seen with before it counts as shared"
    )

    # --- processes -----------------------------------------------------------------------------------------
    metrics_port: int = Field(9464, description="Prometheus /metrics port of this process (0 = off)")
    web_port: int = Field(6066, description="Faust web port of a worker")
    worker_id: int = Field(0, ge=0, description="Index of this worker on the host (ports and state dirs)")
    log_level: str = Field("INFO", description="Log level")

    def topic(self, name: str) -> str:
        """Full topic name with the environment prefix."""
        return f"{self.topic_prefix}{name}"

    @property
    def input_topics(self) -> dict[str, str]:
        """Channel -> input topic name."""
        return {channel: self.topic(channel) for channel in CHANNELS}

    @property
    def pipeline_topics(self) -> list[str]:
        """Every topic the project creates (inputs, internal and outputs)."""
        names = [
            *CHANNELS,
            "customer-events",
            "failed-events",
            "resolved-events",
            "sessions",
            "identity-merges",
            "journey-stages",
            "signals",
            "customer-profiles",
            "identity-links",
            "identity-assignments",
        ]
        return [self.topic(n) for n in names]


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (CLI flags) taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
