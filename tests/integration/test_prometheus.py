"""A real worker and the real sink scraped by a real Prometheus server (Debian package, loopback, temp dir,
1 s scrapes).

One module-scoped run: simulated traffic, one worker until drained and the sink, then Prometheus scrapes both
with the project's alert rules loaded. The tests compare what Prometheus stores with the simulator's truth,
check that every metric the dashboard and the alert rules name has a series, and check the worker's own
/metrics text for bounded cardinality (no customer or product ids, few series per family).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline.drain import wait_drained
from tests.integration.pipeline_env import FAILURE_OUTCOMES, PipelineEnv, free_port
from tests.integration.processes import Proc, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "omnistream.rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "omnistream.json"
PROMETHEUS = "/usr/bin/prometheus"

#: Every label name a worker may export, and how many values each may take at most on one worker.
BOUNDED_LABELS = {
    "channel": 4,
    "event_type": 40,
    "failure_type": 10,
    "stage": 10,
    "operation": 40,
    "route": 4,
    "rule": 20,
    "status": 5,
    "topic": 12,
    "partition": 64,
    "from_stage": 12,  # journey stage machine (pipeline/metrics_journey.py)
    "to_stage": 12,
    "signal_type": 20,
    "holdout": 2,
    "reason": 20,
    "le": 50,  # bucket bounds, the union over every histogram
    # omnistream_build_info and the standard python_info / python_gc_* series: one value each per process
    "version": 2,  # omnistream's and Python's
    "role": 2,
    "python": 1,
    "faust": 1,
    "duckdb": 1,
    "implementation": 1,
    "major": 1,
    "minor": 1,
    "patchlevel": 1,
    "generation": 3,
    "quantile": 0,
}
MAX_SERIES_PER_FAMILY = 200
SAMPLE_PREFIXES = ("omnistream_events_in_total", "omnistream_failed_events_total{channel=\"web\"",
                   "omnistream_consumer_lag{partition=\"0\"", "omnistream_rebalances_total",
                   "omnistream_commit_seconds_count", "omnistream_identity_merges_total", "omnistream_open_sessions",
                   "omnistream_session_versions_total")  # fmt: skip


@pytest.fixture(scope="module")
def run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("prom")
    env = PipelineEnv.create(kafka_bootstrap, workdir)
    truth = env.simulate("--customers", "150", "--days", "5", "--seed", "17", "--bad-share", "0.05")
    metrics_port, sink_port = free_port(), free_port()
    worker = env.start_worker(OMNISTREAM_METRICS_PORT=str(metrics_port))
    db = workdir / "warehouse.duckdb"
    sink = Proc(["sink", "--db", str(db), "--snapshot", str(workdir / "snap.duckdb"), "--metrics-port", str(sink_port)],
                env.env(), workdir / "sink.log")  # fmt: skip
    prom: subprocess.Popen[bytes] | None = None
    try:
        wait_drained(env.settings(), quiet_s=3, timeout_s=240, alive=worker.alive)
        prom_port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{json.dumps(str(RULES))}]\n"
            "scrape_configs:\n"
            "  - job_name: omnistream-worker\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n"
            "  - job_name: omnistream-sink\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{sink_port}']}}]\n"
        )
        log = (workdir / "prometheus.log").open("wb")
        prom = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        api = f"http://127.0.0.1:{prom_port}"
        wait_until(lambda: _ready(api), 60, what="prometheus ready")
        scraped = f"http://127.0.0.1:{metrics_port}/metrics"
        text = urllib.request.urlopen(scraped, timeout=5).read().decode()
        yield {"env": env, "truth": truth, "api": api, "metrics_text": text, "worker": worker}
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=30)
        codes = (worker.terminate(), sink.terminate())
        assert codes == (0, 0), (worker.log_tail(), sink.log_tail())


def _ready(api: str) -> bool:
    try:
        return urllib.request.urlopen(f"{api}/-/ready", timeout=2).status == 200
    except OSError:
        return False


def query(api: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Instant query -> {sorted label pairs without __name__: value}."""
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert body["status"] == "success", body
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
        for r in body["data"]["result"]
    }


def wait_query(api: str, promql: str, want: dict[tuple[tuple[str, str], ...], float], timeout_s: float = 30) -> None:
    got: dict[tuple[tuple[str, str], ...], float] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = query(api, promql)
        if got == want:
            return
        time.sleep(0.5)
    assert got == want, promql


def test_prometheus_sees_the_events_the_simulator_produced(run: dict[str, Any]) -> None:
    api, truth, env = run["api"], run["truth"], run["env"]
    expected = truth["expected"]
    per_channel = {
        (("channel", channel),): float(expected["per_topic"].get(env.settings().topic(channel), 0))
        for channel in ("web", "mobile", "store", "social")
    }
    wait_query(api, "sum by (channel) (omnistream_events_in_total)", per_channel)
    wait_query(api, "sum(omnistream_canonical_events_total)", {(): float(expected["unique_valid_events"])})
    wait_query(api, "sum(omnistream_duplicates_dropped_total)", {(): float(expected["duplicates"])})
    failed = {
        (("failure_type", o),): float(n) for o, n in expected["per_outcome"].items() if o in FAILURE_OUTCOMES and n
    }
    wait_query(api, "sum by (failure_type) (omnistream_failed_events_total)", failed)
    assert query(api, 'up{job="omnistream-worker"}') == {
        (("instance", _instance(run)), ("job", "omnistream-worker")): 1.0
    }


def test_faust_sensor_metrics_reach_prometheus(run: dict[str, Any]) -> None:
    api = run["api"]
    # Drained before Prometheus started: every owned source partition reports lag 0, and 4 channels x 4
    # partitions + identity-links (1) + resolved-events (4) are owned by this one worker.
    lag = query(api, "omnistream_consumer_lag")
    assert len(lag) == 21 and set(lag.values()) == {0.0}, lag
    assert query(api, "sum(omnistream_assigned_partitions) >= 21") != {}
    assert query(api, "sum(omnistream_rebalances_total)")[()] >= 1
    assert query(api, "sum(omnistream_commit_seconds_count)")[()] >= 1
    assert query(api, "sum(omnistream_session_versions_total)")[()] > 0
    assert query(api, "sum(omnistream_identity_routed_total)")[()] == float(
        run["truth"]["expected"]["unique_valid_events"]
    )


def test_alert_rules_load_and_quiet_pipeline_fires_nothing_critical(run: dict[str, Any]) -> None:
    url = f"{run['api']}/api/v1/rules"
    wait_until(lambda: bool(json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["groups"]), 30,
               what="rules loaded")  # fmt: skip
    groups = json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["groups"]
    names = {r["name"] for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert {"ConsumerLagGrowing", "WorkerDown", "RebalanceStorm", "FailedEventsRatioHigh", "SinkStalled",
            "SnapshotTooOld", "NoEventsFromChannel"} <= names  # fmt: skip
    assert all(r.get("health") != "err" for g in groups for r in g["rules"]), "a rule fails to evaluate"
    firing = {(r["name"], a["labels"].get("severity")) for g in groups for r in g["rules"] for a in r.get("alerts", [])}
    assert ("WorkerDown", "critical") not in firing


def named_metrics() -> set[str]:
    """Every metric (not recording rule) the alert rules and the dashboard's queries name."""
    exprs = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    exprs += [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p.get("targets", [])]
    return {m for e in exprs for m in re.findall(r"(?<![:\w])((?:omnistream|process|python)_[a-z0-9_]+)", e)}


def test_every_metric_the_dashboard_and_the_alerts_name_has_a_series(run: dict[str, Any]) -> None:
    """A panel or an alert over a metric that has no series is silently empty: each one must exist once both
    processes were scraped (counters and histograms by any of their sample names)."""

    def stored() -> set[str]:
        url = f"{run['api']}/api/v1/label/__name__/values"
        return set(json.loads(urllib.request.urlopen(url, timeout=5).read())["data"])

    wanted = named_metrics()
    assert {"omnistream_sink_lag_messages", "omnistream_ready", "omnistream_memory_limit_bytes"} <= wanted

    def missing() -> set[str]:
        have = stored()
        suffixes = ("", "_total", "_bucket", "_count", "_sum", "_info")
        return {m for m in wanted if not any(m + s in have or m.removesuffix(s) in have for s in suffixes)}

    deadline = time.monotonic() + 30  # the first scrapes of both targets
    while missing() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not missing()


def test_metrics_cardinality_is_bounded(run: dict[str, Any]) -> None:
    text: str = run["metrics_text"]
    sample = [ln for ln in text.splitlines() if ln.startswith(SAMPLE_PREFIXES)]
    print("\n/metrics sample:\n" + "\n".join(sample[:40]))
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families}
    assert {"omnistream_events_in", "omnistream_consumer_lag", "omnistream_rebalances", "omnistream_commit_seconds",
            "omnistream_identity_links", "omnistream_open_sessions", "omnistream_session_duration_seconds",
            "omnistream_event_time_lag_seconds"} <= names  # fmt: skip
    values: dict[str, set[str]] = {}
    for family in families:
        assert len(family.samples) <= MAX_SERIES_PER_FAMILY, (family.name, len(family.samples))
        for sample in family.samples:
            for label, value in sample.labels.items():
                assert label in BOUNDED_LABELS, f"{family.name}: unexpected label {label}"
                values.setdefault(label, set()).add(value)
    for label, seen in values.items():
        assert len(seen) <= BOUNDED_LABELS[label], (label, sorted(seen))
    # No identifier of any simulated person or product appears anywhere in the exposition.
    truth = run["truth"]
    ids = set(truth["people"]) | {k.partition(":")[2] for k in truth["identifiers"]}
    ids |= {p for j in truth["journeys"] for p in j["product_ids"]}
    assert len(ids) > 100
    tokens = set(re.findall(r'"([^"]*)"', text))
    assert not tokens & ids


def _instance(run: dict[str, Any]) -> str:
    url = f"{run['api']}/api/v1/targets"
    targets = json.loads(urllib.request.urlopen(url, timeout=5).read())["data"]["activeTargets"]
    return str(next(t for t in targets if t["labels"]["job"] == "omnistream-worker")["labels"]["instance"])


def test_prometheus_binary_is_installed() -> None:
    assert shutil.which(PROMETHEUS), "the Debian package `prometheus` provides /usr/bin/prometheus"
