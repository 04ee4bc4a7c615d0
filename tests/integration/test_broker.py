"""The real local broker: idempotent start, topics, a produce/consume round trip, status, and clear errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer

from pipeline.kafka_local import (
    LocalKafkaError,
    broker_status,
    delete_topics,
    ensure_topics,
    list_topics,
    start_broker,
    stop_broker,
    wait_ready,
)
from pipeline.kafka_local.config import BrokerLayout
from pipeline.kafka_local.process import find_pids
from pipeline.settings import Settings
from pipeline.topics import topic_specs

REPO = Path(__file__).resolve().parents[2]
CLI = "from pipeline.cli.kafka import kafka_app; kafka_app()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=REPO,
        env={**os.environ, **(env or {}), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _no_broker_left(settings: Settings) -> bool:
    layout = BrokerLayout.from_settings(settings)
    return not find_pids(str(layout.server_properties)) and not layout.pid_file.exists()


@pytest.fixture
def isolated(tmp_path: Path, kafka_settings: Settings) -> Iterator[Settings]:
    """Settings of a private broker (own state dir, free ports); whatever it started is stopped after."""
    settings = kafka_settings.model_copy(
        update={
            "state_dir": tmp_path / "state",
            "broker_port": _free_port(),
            "controller_port": _free_port(),
            "broker_start_timeout_s": 60.0,
        }
    )
    yield settings
    stop_broker(settings, timeout_s=10.0)


def test_up_twice_is_idempotent_and_quick(kafka_bootstrap: str, test_broker_settings: Settings) -> None:
    began = time.monotonic()
    again = start_broker(test_broker_settings)
    assert again.started is False
    assert again.bootstrap == kafka_bootstrap or again.external
    assert time.monotonic() - began < 10
    wait_ready(kafka_bootstrap, 5.0)


def test_cli_up_creates_pipeline_topics_with_configured_partitions(
    kafka_settings: Settings, unique_name: Callable[[str], str]
) -> None:
    prefix = unique_name("cli") + "."
    env = {
        "OMNISTREAM_STATE_DIR": str(kafka_settings.state_dir),
        "OMNISTREAM_TOPIC_PREFIX": prefix,
        "OMNISTREAM_PARTITIONS": "3",
    }
    first = _run_cli("up", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    began = time.monotonic()
    second = _run_cli("up", "--partitions", "3", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert time.monotonic() - began < 15
    prefixed = kafka_settings.model_copy(update={"topic_prefix": prefix, "partitions": 3})
    expected = {spec.name: spec.partitions for spec in topic_specs(prefixed)}
    topics = list_topics(kafka_settings.kafka_bootstrap)
    assert {name: topics.get(name) for name in expected} == expected
    assert expected[prefix + "identity-links"] == 1 and expected[prefix + "web"] == 3
    delete_topics(kafka_settings.kafka_bootstrap, list(expected))


def test_ensure_topics_is_idempotent_and_keeps_partition_count(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("idem")
    assert ensure_topics(kafka_bootstrap, [topic], partitions=5, replication_factor=1) == {topic: 5}
    # An existing topic is fine and is never re-partitioned.
    assert ensure_topics(kafka_bootstrap, [topic], partitions=2, replication_factor=1) == {topic: 5}
    assert delete_topics(kafka_bootstrap, [topic, unique_name("never-existed")]) == [topic]


def test_produce_consume_round_trip(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topic, group = unique_name("roundtrip"), unique_name("group")
    ensure_topics(kafka_bootstrap, [topic], partitions=2, replication_factor=1)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, key=b"customer-1", value=b"hello kafka").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        consumer_timeout_ms=30_000,
    )
    try:
        received = next(iter(consumer))
    finally:
        consumer.close()
        delete_topics(kafka_bootstrap, [topic])
    assert (received.key, received.value) == (b"customer-1", b"hello kafka")


def test_status_reports_running_broker_and_topics(kafka_settings: Settings, unique_name: Callable[[str], str]) -> None:
    topic = unique_name("status")
    ensure_topics(kafka_settings.kafka_bootstrap, [topic], partitions=3, replication_factor=1)
    state = broker_status(kafka_settings)
    assert state.running
    assert state.topics[topic] == 3
    shown = _run_cli("status", env={"OMNISTREAM_STATE_DIR": str(kafka_settings.state_dir)})
    delete_topics(kafka_settings.kafka_bootstrap, [topic])
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "running" in shown.stdout and topic in shown.stdout


def test_admin_calls_on_a_dead_bootstrap_raise_local_kafka_error(isolated: Settings) -> None:
    with pytest.raises(LocalKafkaError, match="did not answer"):
        list_topics(f"127.0.0.1:{isolated.broker_port}", timeout_s=1.0)
    with pytest.raises(LocalKafkaError, match="did not answer metadata within 1 s"):
        wait_ready(f"127.0.0.1:{isolated.broker_port}", 1.0)


def test_status_and_down_when_nothing_runs(isolated: Settings) -> None:
    env = {
        "OMNISTREAM_STATE_DIR": str(isolated.state_dir),
        "OMNISTREAM_BROKER_PORT": str(isolated.broker_port),
    }
    assert broker_status(isolated).running is False
    shown = _run_cli("status", env=env)
    assert shown.returncode == 1
    assert "not running" in shown.stdout
    assert stop_broker(isolated) is None
    assert _run_cli("down", env=env).returncode == 0


@pytest.mark.parametrize("busy", ["broker_port", "controller_port"])
def test_port_in_use_is_a_clear_error_and_leaves_no_java(isolated: Settings, busy: str) -> None:
    port = getattr(isolated, busy)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(LocalKafkaError, match=rf"port {port}\b.*already in use"):
            start_broker(isolated)
        assert _no_broker_left(isolated)
        env = {
            "OMNISTREAM_STATE_DIR": str(isolated.state_dir),
            "OMNISTREAM_BROKER_PORT": str(isolated.broker_port),
            "OMNISTREAM_CONTROLLER_PORT": str(isolated.controller_port),
        }
        cli = _run_cli("up", env=env)
    assert cli.returncode == 1
    assert f"port {port}" in cli.stdout and "Traceback" not in cli.stdout + cli.stderr
    assert _no_broker_left(isolated)


def test_broker_dying_during_start_reports_log_tail(isolated: Settings) -> None:
    with pytest.raises(LocalKafkaError, match="exited during start") as caught:
        start_broker(isolated, heap=("-Xmx1m", "-Xms1m"))  # the JVM refuses to boot with 1 MB heap
    assert "heap" in caught.value.details.lower()
    assert _no_broker_left(isolated)


def test_isolated_broker_full_cycle(isolated: Settings, unique_name: Callable[[str], str]) -> None:
    started = start_broker(isolated)
    assert started.started and started.pid is not None
    assert start_broker(isolated).pid == started.pid  # second up: same process
    moved = isolated.model_copy(update={"broker_port": _free_port()})
    with pytest.raises(LocalKafkaError, match="kafka down` first to change its ports"):
        start_broker(moved)  # fails fast instead of waiting for metadata on the wrong port
    topic = unique_name("cycle")
    assert ensure_topics(started.bootstrap, [topic], isolated.partitions, 1) == {topic: isolated.partitions}
    assert stop_broker(isolated) == started.pid
    assert broker_status(isolated).running is False
    assert _no_broker_left(isolated)
    # Restart on the formatted storage: the topic survived.
    assert start_broker(isolated).started
    assert list_topics(started.bootstrap)[topic] == isolated.partitions
    stop_broker(isolated, purge=True)
    assert not BrokerLayout.from_settings(isolated).data_dir.exists()


def test_missing_java_is_a_clear_error(isolated: Settings) -> None:
    with pytest.raises(LocalKafkaError, match="`no-such-java` not found on PATH"):
        start_broker(isolated, java="no-such-java")
    cli = _run_cli("up", env={"PATH": "/nonexistent", "OMNISTREAM_STATE_DIR": str(isolated.state_dir)})
    assert cli.returncode == 1
    assert "`java` not found on PATH" in cli.stdout and "Traceback" not in cli.stdout + cli.stderr


def test_missing_maven_is_a_clear_error_when_jars_are_not_cached(isolated: Settings, tmp_path: Path) -> None:
    uncached = isolated.model_copy(update={"kafka_cache_dir": tmp_path / "empty-cache"})
    with pytest.raises(LocalKafkaError, match="`no-such-mvn` not found on PATH"):
        start_broker(uncached, mvn="no-such-mvn")
    assert _no_broker_left(uncached)


def test_maven_failure_is_a_clear_error(isolated: Settings, tmp_path: Path) -> None:
    bogus = isolated.model_copy(update={"kafka_cache_dir": tmp_path / "cache", "kafka_version": "0.0.0-does-not-exist"})
    with pytest.raises(LocalKafkaError, match=r"Maven failed \(exit \d+\) fetching Kafka 0.0.0-does-not-exist"):
        start_broker(bogus)
    libs_dir = tmp_path / "cache" / "kafka-0.0.0-does-not-exist"
    assert not (libs_dir / "libs").exists() and not (libs_dir / "libs.partial").exists()
