"""Prometheus metrics of journey stages, signals and churn scoring (registry passed in, bounded labels only:
stage names, signal types, suppression reasons; never customer or product ids)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.metrics import ChildCache


@dataclass(frozen=True)
class JourneySignalMetrics:
    transitions: ChildCache[Counter]  # from_stage, to_stage
    signals: ChildCache[Counter]  # signal_type, holdout
    suppressed: ChildCache[Counter]  # signal_type, reason
    profiles: Counter
    churn_risk_customers: Gauge
    state_bytes: Gauge


def journey_signal_metrics(registry: CollectorRegistry) -> JourneySignalMetrics:
    """Create the journey-signal metrics on ``registry``."""
    ns = "omnistream"
    return JourneySignalMetrics(
        transitions=ChildCache(
            Counter(
                "journey_stage_transitions",
                "Stage transitions emitted",
                ["from_stage", "to_stage"],
                namespace=ns,
                registry=registry,
            )
        ),
        signals=ChildCache(
            Counter("signals", "Signals emitted", ["signal_type", "holdout"], namespace=ns, registry=registry)
        ),
        suppressed=ChildCache(
            Counter(
                "signals_suppressed",
                "Trigger matches not emitted (consent, frequency cap)",
                ["signal_type", "reason"],
                namespace=ns,
                registry=registry,
            )
        ),
        profiles=Counter(
            "customer_profile_versions", "Customer profile versions emitted", namespace=ns, registry=registry
        ),
        churn_risk_customers=Gauge(
            "churn_risk_customers",
            "Customers of this worker's partitions at churn risk (set by the timer sweep)",
            namespace=ns,
            registry=registry,
        ),
        state_bytes=Gauge(
            "journey_state_bytes_avg",
            "Mean journey state record size on this worker (sweep)",
            namespace=ns,
            registry=registry,
        ),
    )
