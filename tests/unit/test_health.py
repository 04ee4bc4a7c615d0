"""/healthz follows the process's heartbeat, /ready its readiness check, /metrics the registry it was given."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Counter

from pipeline.health import Health, serve


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_liveness_readiness_and_metrics_over_http() -> None:
    clock, why = Clock(), ["partitions not assigned yet"]
    health = Health(lambda: why[0] or None, stale_after_s=30, clock=clock)
    health.beat()
    registry = CollectorRegistry()
    Counter("things", "Things", registry=registry).inc(3)
    served = serve(registry, health, 0, "127.0.0.1")
    try:
        assert _get(served.port, "/healthz") == (200, "ok\n")
        assert _get(served.port, "/ready") == (503, "partitions not assigned yet\n")
        assert registry.get_sample_value("omnistream_ready") == 0.0
        why[0] = ""
        assert _get(served.port, "/ready") == (200, "ok\n")
        assert registry.get_sample_value("omnistream_ready") == 1.0
        clock.t += 31  # the loop stopped beating: neither alive nor ready
        assert _get(served.port, "/healthz") == (503, "no heartbeat for 31s\n")
        assert _get(served.port, "/ready")[0] == 503
        health.beat()
        assert _get(served.port, "/healthz")[0] == 200
        status, text = _get(served.port, "/metrics")
        assert status == 200 and "things_total 3.0" in text
        assert _get(served.port, "/anything")[0] == 404
    finally:
        served.stop()


def test_a_worker_reports_readiness_with_its_beat_and_counts_as_alive_while_starting() -> None:
    clock = Clock()
    health = Health(stale_after_s=30, startup_s=600, clock=clock)
    assert (health.alive(), health.ready()) == (None, "starting")
    clock.t += 599  # recovering a large table: no beat yet, still alive
    assert health.alive() is None
    health.beat("rebalancing")
    assert (health.alive(), health.ready()) == (None, "rebalancing")
    health.beat()
    assert health.ready() is None
    never = Health(startup_s=600, clock=clock)
    clock.t += 601
    assert never.alive() == "no heartbeat 601s after start"


def test_a_readiness_check_that_raises_means_not_ready() -> None:
    def broken() -> str | None:
        raise RuntimeError("consumer gone")

    assert Health(broken).ready() == "readiness check failed: RuntimeError('consumer gone')"
