"""Prometheus metrics of every omnistream process.

The registry is passed in (a fresh one per test); nothing registers on the global default registry.
Label values are bounded sets (channels, event types, failure types, topics): never customer or product ids.
Hot paths pre-bind label children once (``ChildCache``) so that no label lookup happens per event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
)

M = TypeVar("M", Counter, Gauge, Histogram)

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)
BATCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ChildCache(Generic[M]):
    """Label children of one metric, created on first use and reused (label lookup is slow per event)."""

    def __init__(self, metric: M) -> None:
        self._metric: M = metric
        self._children: dict[tuple[str, ...], M] = {}

    def get(self, *labels: str) -> M:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


@dataclass(frozen=True)
class IngestMetrics:
    """What the ingest agents count."""

    events_in: ChildCache[Counter]
    events_out: ChildCache[Counter]
    failed: ChildCache[Counter]
    duplicates: ChildCache[Counter]
    suppressed: ChildCache[Counter]
    event_lag: ChildCache[Histogram]
    batch_seconds: ChildCache[Histogram]
    infra_retries: ChildCache[Counter]
    invalid_ratio: ChildCache[Gauge]
    held: ChildCache[Gauge]
    paused: ChildCache[Gauge]


def ingest_metrics(registry: CollectorRegistry) -> IngestMetrics:
    """Create the ingest metrics on ``registry``."""
    ns = "omnistream"
    return IngestMetrics(
        events_in=ChildCache(
            Counter("events_in", "Input messages consumed", ["channel"], namespace=ns, registry=registry)
        ),
        events_out=ChildCache(
            Counter(
                "canonical_events",
                "Valid events published to customer-events",
                ["channel", "event_type"],
                namespace=ns,
                registry=registry,
            )
        ),
        failed=ChildCache(
            Counter(
                "failed_events",
                "Inputs rejected to failed-events",
                ["channel", "failure_type"],
                namespace=ns,
                registry=registry,
            )
        ),
        duplicates=ChildCache(
            Counter(
                "duplicates_dropped",
                "Inputs dropped as duplicate event ids",
                ["channel"],
                namespace=ns,
                registry=registry,
            )
        ),
        suppressed=ChildCache(
            Counter(
                "events_suppressed",
                "Valid inputs dropped because they carry an erased person's identifier (no content kept)",
                ["channel"],
                namespace=ns,
                registry=registry,
            )
        ),
        event_lag=ChildCache(
            Histogram(
                "event_time_lag_seconds",
                "Processing time minus event time at ingest",
                ["channel"],
                buckets=LAG_BUCKETS,
                namespace=ns,
                registry=registry,
            )
        ),
        batch_seconds=ChildCache(
            Histogram(
                "batch_seconds",
                "Wall time to process and publish one micro-batch",
                ["stage"],
                buckets=BATCH_BUCKETS,
                namespace=ns,
                registry=registry,
            )
        ),
        infra_retries=ChildCache(
            Counter(
                "infra_retries",
                "Retries of infrastructure operations (Kafka produce, DuckDB) after an error",
                ["operation"],
                namespace=ns,
                registry=registry,
            )
        ),
        invalid_ratio=ChildCache(
            Gauge(
                "invalid_ratio",
                "Share of invalid inputs over the guard window",
                ["channel"],
                namespace=ns,
                registry=registry,
            )
        ),
        held=ChildCache(
            Gauge(
                "ingest_held_messages",
                "Input messages waiting for the identity writer's watermark before they are routed",
                ["channel"],
                namespace=ns,
                registry=registry,
            )
        ),
        paused=ChildCache(
            Gauge(
                "ingest_paused_partitions",
                "Input partitions paused because their progress ran too far past the watermark",
                ["channel"],
                namespace=ns,
                registry=registry,
            )
        ),
    )


@dataclass(frozen=True)
class IdentityMetrics:
    """What identity routing and the link writer count."""

    routed: ChildCache[Counter]
    links: ChildCache[Counter]
    merges: Counter
    shared: Counter
    processing_errors: Counter
    suppressed: Counter


def identity_metrics(registry: CollectorRegistry) -> IdentityMetrics:
    """Create the identity metrics on ``registry``."""
    ns = "omnistream"
    return IdentityMetrics(
        routed=ChildCache(
            Counter(
                "identity_routed",
                "Canonical events routed (resolved locally or sent as link)",
                ["route"],
                namespace=ns,
                registry=registry,
            )
        ),
        links=ChildCache(
            Counter("identity_links", "Links applied by the identity writer", ["rule"], namespace=ns, registry=registry)
        ),
        merges=Counter("identity_merges", "Profiles merged into another", namespace=ns, registry=registry),
        shared=Counter(
            "shared_identifiers_detected",
            "Identifiers found to be shared (kiosk, family tablet)",
            namespace=ns,
            registry=registry,
        ),
        processing_errors=Counter(
            "identity_processing_errors",
            "Link events the identity writer failed on unexpectedly (sent to failed-events as processing_error)",
            namespace=ns,
            registry=registry,
        ),
        suppressed=Counter(
            "identity_links_suppressed",
            "Link events ignored because they carry an erased person's identifier",
            namespace=ns,
            registry=registry,
        ),
    )


@dataclass(frozen=True)
class JourneyMetrics:
    """What the journey stage counts."""

    session_versions: ChildCache[Counter]
    late: Counter
    forwarded: Counter
    transfers: Counter
    open_sessions: Gauge
    session_duration: Histogram
    events: Counter
    behind: Counter
    pending: Gauge
    watermark: ChildCache[Gauge]
    restore_seconds: Histogram
    processing_errors: Counter
    catch_up: Counter
    erased: Counter
    suppressed: Counter


def journey_metrics(registry: CollectorRegistry) -> JourneyMetrics:
    """Create the journey metrics on ``registry``."""
    ns = "omnistream"
    return JourneyMetrics(
        session_versions=ChildCache(
            Counter("session_versions", "Session versions emitted", ["status"], namespace=ns, registry=registry)
        ),
        late=Counter(
            "late_events",
            "Events behind their customer's clock by more than the allowed lateness (sent to failed-events)",
            namespace=ns,
            registry=registry,
        ),
        forwarded=Counter(
            "journey_forwarded", "Events re-keyed to the profile that absorbed theirs", namespace=ns, registry=registry
        ),
        transfers=Counter(
            "journey_state_transfers", "Journey states handed to a surviving profile", namespace=ns, registry=registry
        ),
        open_sessions=Gauge(
            "open_sessions", "Sessions open in this worker's customers", namespace=ns, registry=registry
        ),
        session_duration=Histogram(
            "session_duration_seconds",
            "Duration of closed sessions",
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200),
            namespace=ns,
            registry=registry,
        ),
        events=Counter(
            "journey_events",
            "Customer events applied to journey state (bundle entries counted one by one)",
            namespace=ns,
            registry=registry,
        ),
        behind=Counter(
            "journey_events_behind",
            "Items that arrived behind their customer's event-time clock (a source resumed after being idle)",
            namespace=ns,
            registry=registry,
        ),
        pending=Gauge(
            "journey_pending_items",
            "Items waiting for the watermark in this worker's journey partitions",
            namespace=ns,
            registry=registry,
        ),
        watermark=ChildCache(
            Gauge(
                "journey_watermark_seconds",
                "Event-time watermark of a journey partition (epoch seconds; 0 before every source was heard)",
                ["partition"],
                namespace=ns,
                registry=registry,
            )
        ),
        restore_seconds=Histogram(
            "journey_restore_seconds",
            "Time to rebuild a journey partition's runtime after it was assigned",
            buckets=(0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
            namespace=ns,
            registry=registry,
        ),
        processing_errors=Counter(
            "journey_processing_errors",
            "Journey items a customer failed on unexpectedly (sent to failed-events as processing_error)",
            namespace=ns,
            registry=registry,
        ),
        catch_up=Counter(
            "journey_catch_up_messages",
            "resolved-events messages applied again on restore: committed past the state recovered for them",
            namespace=ns,
            registry=registry,
        ),
        erased=Counter(
            "journey_customers_erased", "Customer records deleted by erasure requests", namespace=ns, registry=registry
        ),
        suppressed=Counter(
            "journey_events_suppressed",
            "Events of an erased profile that reached the journey and were dropped",
            namespace=ns,
            registry=registry,
        ),
    )


@dataclass(frozen=True)
class ConsumerMetrics:
    """What the Faust sensor exports about the worker's Kafka consumer (pipeline/faust_sensor.py).

    Consumer lag per partition is not here: it is computed when scraped (``ConsumerLagCollector``), so it
    keeps growing on the dashboard even while the worker's event loop is stuck.
    """

    rebalances: Counter
    rebalance_seconds: Histogram
    commit_seconds: Histogram
    assigned_partitions: Gauge


def consumer_metrics(registry: CollectorRegistry) -> ConsumerMetrics:
    """Create the consumer-group metrics on ``registry``."""
    ns = "omnistream"
    return ConsumerMetrics(
        rebalances=Counter(
            "rebalances", "Consumer-group rebalances this worker took part in", namespace=ns, registry=registry
        ),
        rebalance_seconds=Histogram(
            "rebalance_seconds",
            "Wall time from a rebalance starting to this worker resuming with its new partitions",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            namespace=ns,
            registry=registry,
        ),
        commit_seconds=Histogram(
            "commit_seconds",
            "Wall time of one offset commit (producer flush + Kafka commit)",
            buckets=BATCH_BUCKETS,
            namespace=ns,
            registry=registry,
        ),
        assigned_partitions=Gauge(
            "assigned_partitions", "Partitions currently assigned to this worker", namespace=ns, registry=registry
        ),
    )


def process_metrics(registry: CollectorRegistry, role: str) -> None:
    """The standard ``process_*`` (CPU, memory, open files), ``python_gc_*`` and ``python_info`` series, and
    ``omnistream_build_info{version, role, python, faust, duckdb}`` on ``registry``."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from pipeline import __version__

    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "none"

    info = Info("omnistream_build", "Version of omnistream and of what it runs on", registry=registry)
    info.info({"version": __version__, "role": role, "python": platform.python_version(),
               "faust": installed("faust-streaming"), "duckdb": installed("duckdb")})  # fmt: skip
    memory_limit_gauge(registry)


def memory_limit_gauge(registry: CollectorRegistry) -> Gauge:
    """``omnistream_memory_limit_bytes``: the container's memory limit, read at every scrape."""
    limit = Gauge("omnistream_memory_limit_bytes", "Memory limit of this process's container (cgroup); NaN: none",
                  registry=registry)  # fmt: skip
    limit.set_function(memory_limit_bytes)
    return limit


#: cgroup v1 reports "no limit" as a page-rounded 2**63 - 1; anything this large is no limit.
_NO_LIMIT = 2**60


def memory_limit_bytes(root: Path = Path("/sys/fs/cgroup")) -> float:
    """The memory limit of the cgroup this process runs in (cgroup v2 ``memory.max``, else v1
    ``memory/memory.limit_in_bytes``); NaN when there is none or it cannot be read. Read at every scrape, so
    a limit changed under a running container shows up."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max" or not text.isdigit() or int(text) >= _NO_LIMIT:
            return math.nan
        return float(text)
    return math.nan
