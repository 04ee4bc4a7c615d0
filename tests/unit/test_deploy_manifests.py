"""Deployment files, checked by what runs here (no Docker engine, no cluster): YAML/JSON parse plus structure,
and agreement with the code: CLI commands, OMNISTREAM_* settings and metric names that really exist."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from pipeline.cli import app as cli_app
from pipeline.faust_sensor import ConsumerLagCollector
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
METRIC_MODULES = ("pipeline.metrics", "sinks.metrics", "pipeline.metrics_journey", "pipeline.health")
#: Journey/signal metrics the dashboard shows; another module (issue 4) defines them. Until that module exists
#: they are accepted by name; once it exists, its real names are used and these must match them.
PENDING_JOURNEY_METRICS = {"omnistream_stage_transitions", "omnistream_signals", "omnistream_churn_risk_customers"}
PROMQL_WORDS = {"up", "time", "absent", "rate", "increase", "delta", "sum", "max", "min", "by", "on", "and", "or"}


def exported_metric_names() -> set[str]:
    """Family names of every metric factory (functions taking a CollectorRegistry) plus the lag collector."""
    registry = CollectorRegistry()
    found_journey = False
    for name in METRIC_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        found_journey |= name == "pipeline.metrics_journey"
        for _, fn in inspect.getmembers(module, inspect.isfunction):
            params = list(inspect.signature(fn).parameters.values())
            if fn.__module__ == name and len(params) == 1 and "CollectorRegistry" in str(params[0].annotation):
                fn(registry)
    registry.register(ConsumerLagCollector([]))
    names = {family.name for family in registry.collect()} | {"omnistream_consumer_lag"}
    return names if found_journey else names | PENDING_JOURNEY_METRICS


def metrics_in(expr: str) -> set[str]:
    """omnistream_* metric names an expression uses (suffixes of counters and histograms stripped)."""
    names = set(re.findall(r"(?<![:\w])(omnistream_[a-z0-9_]+)", expr))
    return {re.sub(r"_(total|bucket|count|sum|created)$", "", n) for n in names}


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml_docs(path):
            yield path, doc


def settings_env_names() -> set[str]:
    return {f"OMNISTREAM_{name.upper()}" for name in Settings.model_fields}


def cli_commands() -> set[str]:
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in cli_app.registered_commands}
    return names | {g.name for g in cli_app.registered_groups if g.name}


# --- Grafana ----------------------------------------------------------------------------------------------


def dashboard_panels() -> list[dict[str, Any]]:
    board = json.loads((DEPLOY / "grafana" / "dashboards" / "omnistream.json").read_text())
    return [p for p in board["panels"] if p.get("type") != "row"]


def test_dashboard_covers_the_operational_views() -> None:
    titles = " ".join(p["title"].lower() for p in dashboard_panels())
    for topic in ("throughput", "lag", "failed", "session", "signal", "sink"):
        assert topic in titles, topic


def test_every_dashboard_expression_names_metrics_that_exist() -> None:
    exported = exported_metric_names()
    for panel in dashboard_panels():
        exprs = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
        assert exprs, f"panel {panel['title']!r} has no query"
        for expr in exprs:
            unknown = metrics_in(expr) - exported
            assert not unknown, f"panel {panel['title']!r}: {sorted(unknown)}"


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    providers = yaml.safe_load((prov / "dashboards" / "omnistream.yml").read_text())["providers"]
    sources = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{providers[0]['options']['path']}:ro" in mounts
    assert sources[0]["type"] == "prometheus" and sources[0]["url"] == "http://prometheus:9090"


# --- Prometheus rules -------------------------------------------------------------------------------------


def test_alert_rules_use_metrics_that_exist_and_cover_the_required_alerts() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "omnistream.rules.yml").read_text())
    exported = exported_metric_names()
    alerts = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert not metrics_in(rule["expr"]) - exported, rule
            if "alert" in rule:
                alerts.add(rule["alert"])
                assert rule["labels"]["severity"] in {"warning", "critical"}
                assert rule["annotations"]["runbook"].startswith("docs/operations.md#")
    required = {"ConsumerLagGrowing", "WorkerDown", "RebalanceStorm", "FailedEventsRatioHigh", "SinkStalled",
                "SnapshotTooOld", "NoEventsFromChannel"}  # fmt: skip
    assert required <= alerts
    ops = (ROOT / "docs" / "operations.md").read_text().lower()
    for alert in alerts:
        assert f"### {alert.lower()}" in ops, f"no runbook section for {alert}"


def test_prometheus_job_names_match_between_compose_and_k8s() -> None:
    def jobs(name: str) -> set[str]:
        return {j["job_name"] for j in yaml.safe_load((DEPLOY / "prometheus" / name).read_text())["scrape_configs"]}

    assert {"omnistream-worker", "omnistream-sink"} <= jobs("prometheus.yml")
    assert {"omnistream-worker", "omnistream-sink"} <= jobs("prometheus-k8s.yml")


# --- compose ----------------------------------------------------------------------------------------------


def test_compose_runs_three_kraft_brokers_with_rf3_and_min_isr2() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    brokers = {n: s for n, s in services.items() if s.get("image", "").startswith("apache/kafka")}
    assert len(brokers) == 3
    assert {s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()} == {1, 2, 3}
    for s in brokers.values():
        env = s["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == 3 and env["KAFKA_MIN_INSYNC_REPLICAS"] == 2
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 3


def test_compose_services_use_real_commands_settings_and_ports() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    known_env = settings_env_names()
    for name in ("worker", "sink", "simulate"):
        svc = services[name]
        assert svc["command"][0] in cli_commands(), name
        unknown = {k for k in svc["environment"] if k.startswith("OMNISTREAM_")} - known_env
        assert not unknown, (name, unknown)
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["worker"]["environment"]["OMNISTREAM_REPLICATION_FACTOR"] == "3"
    assert services["sink"]["deploy"]["replicas"] == 1
    assert any(v.endswith(":/var/lib/omnistream") for v in services["sink"]["volumes"])
    assert services["sink"]["command"][-2:] == ["--metrics-port", "9464"]
    assert {"prometheus", "grafana"} <= set(services)
    assert "./prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]


# --- Kubernetes -------------------------------------------------------------------------------------------


def test_k8s_manifests_parse_and_kustomization_lists_them() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in k8s_objects()}
    assert ("StatefulSet", "omnistream-worker") in kinds and ("StatefulSet", "omnistream-sink") in kinds
    assert ("PodDisruptionBudget", "omnistream-worker") in kinds and ("ConfigMap", "omnistream-config") in kinds
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == files


@pytest.mark.parametrize("name,replicas", [("omnistream-worker", None), ("omnistream-sink", 1)])
def test_k8s_statefulsets_have_state_probes_scraping_and_bounded_stop(name: str, replicas: int | None) -> None:
    sts = next(d for _, d in k8s_objects() if d["kind"] == "StatefulSet" and d["metadata"]["name"] == name)
    spec = sts["spec"]
    if replicas is not None:
        assert spec["replicas"] == replicas
    pod = spec["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    port = int(pod["metadata"]["annotations"]["prometheus.io/port"])
    container = pod["spec"]["containers"][0]
    assert container["args"][0] in cli_commands()
    assert {p["containerPort"] for p in container["ports"]} == {port}
    paths = {
        probe: container[probe]["httpGet"]["path"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {"startupProbe": "/healthz", "readinessProbe": "/ready", "livenessProbe": "/healthz"}
    state = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/var/lib/omnistream"]
    assert state and state[0] in {c["metadata"]["name"] for c in spec["volumeClaimTemplates"]}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    config = next(d for _, d in k8s_objects() if d["kind"] == "ConfigMap")["data"]
    assert pod["spec"]["terminationGracePeriodSeconds"] > float(config["OMNISTREAM_SHUTDOWN_TIMEOUT_S"])
    assert int(config["OMNISTREAM_METRICS_PORT"]) == port
    if name == "omnistream-sink":
        assert container["args"][-2:] == ["--metrics-port", str(port)]


def test_k8s_config_and_secret_keys_are_real_settings() -> None:
    known = settings_env_names()
    for _, doc in k8s_objects():
        if doc["kind"] == "ConfigMap":
            assert set(doc["data"]) <= known, set(doc["data"]) - known
    secret = yaml_docs(DEPLOY / "k8s" / "secret.example.yaml")[0]
    assert secret["kind"] == "Secret" and set(secret["stringData"]) <= known
    assert "OMNISTREAM_PII_SECRET" in secret["stringData"]


def test_k8s_pdb_keeps_workers_available() -> None:
    pdb = next(d for _, d in k8s_objects() if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"


# --- Dockerfile -------------------------------------------------------------------------------------------


def test_dockerfile_is_slim_pinned_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ln) for ln in lines if ln.startswith("FROM ")]
    # Slim, and pinned to a patch release: python:3.11.7-slim-..., not python:3.11-slim.
    assert froms and all(re.match(r"FROM python:\d+\.\d+\.\d+-slim", ln) for ln in froms), froms
    user = [ln for ln in lines if ln.startswith("USER ")]
    assert user and not user[-1].split()[1].startswith(("root", "0"))
    assert any(ln.startswith("HEALTHCHECK ") for ln in lines)
    assert 'ENTRYPOINT ["omnistream"]' in lines and 'CMD ["worker"]' in lines
    env_names = set(re.findall(r"\b(OMNISTREAM_[A-Z0-9_]+)", text))
    assert env_names <= settings_env_names(), env_names - settings_env_names()
    # The pinned dependencies are installed in a layer of their own, before any code is copied.
    copies = [ln for ln in lines if ln.startswith(("COPY ", "RUN "))]
    lock = next(i for i, ln in enumerate(copies) if "pip install -r requirements.lock" in ln)
    assert lock < min(i for i, ln in enumerate(copies) if ln.startswith("COPY pipeline"))
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".git", ".venv", ".env", "deploy/secrets"} <= set(ignored)


def test_the_lock_files_pin_every_dependency_of_pyproject() -> None:
    """requirements.lock (image) and constraints.txt (make venv, CI) pin an exact version of every dependency."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def pins(name: str) -> dict[str, str]:
        lines = [ln for ln in (ROOT / name).read_text().splitlines() if ln and not ln.startswith("#")]
        return {re.sub(r"[-_.]+", "-", ln.split("==")[0]).lower(): ln.split("==")[1] for ln in lines}

    def names(specs: list[str]) -> set[str]:
        return {re.sub(r"[-_.]+", "-", Requirement(s).name).lower() for s in specs}

    runtime, everything = pins("requirements.lock"), pins("constraints.txt")
    assert names(project["dependencies"]) <= runtime.keys()
    assert names(project["dependencies"] + project["optional-dependencies"]["dev"]) <= everything.keys()
    assert all(everything[k] == v for k, v in runtime.items())
