"""Pure parts of the local broker (config rendering, cluster ids, command lines, jar cache, process
plumbing) — none of these tests starts Java or needs a broker."""

from __future__ import annotations

import base64
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.kafka_local import LocalKafkaError, parse_heap, start_broker, stop_broker
from pipeline.kafka_local.broker import _cluster_id, running_pid
from pipeline.kafka_local.config import (
    BrokerLayout,
    broker_command,
    cluster_id_from_meta,
    format_command,
    is_broker_cmdline,
    is_valid_cluster_id,
    new_cluster_id,
    render_log4j_properties,
    render_server_properties,
)
from pipeline.kafka_local.jars import MARKER, cached_libs, ensure_jars, maven_command
from pipeline.kafka_local.locking import file_lock
from pipeline.kafka_local.process import port_in_use, process_argv, spawn_detached, tail, terminate
from pipeline.kafka_local.shared import live_leases
from pipeline.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        kafka_cache_dir=tmp_path / "cache",
        broker_port=29092,
        controller_port=29093,
        partitions=6,
    )


@pytest.fixture
def layout(settings: Settings) -> BrokerLayout:
    return BrokerLayout.from_settings(settings)


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_layout_paths_are_absolute_and_versioned(settings: Settings, tmp_path: Path) -> None:
    relative = settings.model_copy(update={"state_dir": Path("rel-state")})
    layout = BrokerLayout.from_settings(relative)
    assert layout.root == Path.cwd() / "rel-state" / "kafka"
    assert layout.libs == tmp_path / "cache" / "kafka-3.9.1" / "libs"
    assert layout.bootstrap == "127.0.0.1:29092"
    assert layout.formatted_marker == layout.data_dir / "meta.properties"


def test_server_properties_single_node_kraft(layout: BrokerLayout) -> None:
    props = _props(render_server_properties(layout, partitions=6))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == str(layout.data_dir)
    assert props["num.partitions"] == "6"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "default.replication.factor",
    ):
        assert props[key] == "1", key


def test_log4j_config_logs_info_to_stdout() -> None:
    props = _props(render_log4j_properties())
    assert props["log4j.rootLogger"] == "INFO, stdout"
    assert props["log4j.appender.stdout"] == "org.apache.log4j.ConsoleAppender"
    assert props["log4j.logger.kafka.request.logger"] == "WARN"


def test_new_cluster_ids_are_kafka_uuids() -> None:
    ids = {new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
        assert is_valid_cluster_id(cluster_id)


@pytest.mark.parametrize("bad", ["", "short", "-" + "A" * 21, "A" * 23, "!" * 22])
def test_invalid_cluster_ids_are_rejected(bad: str) -> None:
    assert not is_valid_cluster_id(bad)


def test_cluster_id_from_meta_properties() -> None:
    meta = "#\n#Tue Nov 23\nnode.id=1\nversion=1\ncluster.id=sCeio-3uRtWyY4D5CO12GQ\n"
    assert cluster_id_from_meta(meta) == "sCeio-3uRtWyY4D5CO12GQ"
    assert cluster_id_from_meta("node.id=1\n") is None


def test_cluster_id_is_generated_once_then_reused(layout: BrokerLayout) -> None:
    layout.root.mkdir(parents=True)
    first = _cluster_id(layout)
    assert _cluster_id(layout) == first
    assert layout.cluster_id_file.read_text().strip() == first


def test_cluster_id_of_formatted_storage_wins(layout: BrokerLayout) -> None:
    layout.data_dir.mkdir(parents=True)
    layout.cluster_id_file.write_text(new_cluster_id() + "\n")
    formatted = new_cluster_id()
    layout.formatted_marker.write_text(f"cluster.id={formatted}\nnode.id=1\n")
    assert _cluster_id(layout) == formatted
    assert layout.cluster_id_file.read_text().strip() == formatted


def test_corrupt_stored_cluster_id_is_replaced(layout: BrokerLayout) -> None:
    layout.root.mkdir(parents=True)
    layout.cluster_id_file.write_text("garbage\n")
    assert is_valid_cluster_id(_cluster_id(layout))


def test_format_and_broker_commands(layout: BrokerLayout) -> None:
    fmt = format_command("/usr/bin/java", layout, "sCeio-3uRtWyY4D5CO12GQ")
    assert fmt[0] == "/usr/bin/java"
    assert fmt[fmt.index("-cp") + 1] == f"{layout.libs}/*"
    assert fmt[fmt.index("kafka.tools.StorageTool") :] == [
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        "-t",
        "sCeio-3uRtWyY4D5CO12GQ",
        "-c",
        str(layout.server_properties),
    ]
    run = broker_command("java", layout, heap=("-Xmx1g", "-Xms512m"))
    assert run[:3] == ["java", "-Xmx1g", "-Xms512m"]
    assert f"-Dlog4j.configuration=file:{layout.log4j_properties}" in run
    assert run[-2:] == ["kafka.Kafka", str(layout.server_properties)]
    assert is_broker_cmdline(run, layout)
    other = BrokerLayout(layout.root.parent / "other", layout.libs, layout.host, 1, 2)
    assert not is_broker_cmdline(run, other)
    assert not is_broker_cmdline(["sleep", str(layout.server_properties)], layout)


def test_parse_heap() -> None:
    assert parse_heap("512m") == ("-Xmx512m", "-Xms256m")
    assert parse_heap("2g") == ("-Xmx2048m", "-Xms1024m")
    assert parse_heap("-Xmx1g -Xms1g") == ("-Xmx1g", "-Xms1g")
    with pytest.raises(LocalKafkaError, match="invalid heap size"):
        parse_heap("lots")


def test_maven_command_overrides_version(tmp_path: Path) -> None:
    cmd = maven_command("mvn", tmp_path / "pom.xml", "3.8.0", tmp_path / "out")
    assert "-Dkafka.version=3.8.0" in cmd
    assert "dependency:copy-dependencies" in cmd
    assert f"-DoutputDirectory={tmp_path / 'out'}" in cmd


def _fake_mvn(directory: Path, body: str) -> str:
    script = directory / "fake-mvn"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_ensure_jars_fetches_once_and_marks_complete(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    mvn = _fake_mvn(
        tmp_path,
        f'echo run >> {calls}\nfor a in "$@"; do case $a in -DoutputDirectory=*) out=${{a#*=}};; esac; done\n'
        'mkdir -p "$out" && touch "$out/kafka_2.13-9.9.9.jar" "$out/kafka-clients-9.9.9.jar"\n',
    )
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    assert cached_libs(tmp_path / "cache", "9.9.9") is None
    libs = ensure_jars(tmp_path / "cache", "9.9.9", mvn=mvn, pom=pom)
    assert (libs / MARKER).is_file() and (libs / "kafka_2.13-9.9.9.jar").is_file()
    assert ensure_jars(tmp_path / "cache", "9.9.9", mvn="no-such-mvn", pom=pom) == libs  # cached: no Maven
    assert calls.read_text().count("run") == 1


def test_half_finished_download_is_redone(tmp_path: Path) -> None:
    libs = tmp_path / "cache" / "kafka-9.9.9" / "libs"
    libs.mkdir(parents=True)
    (libs / "kafka_2.13-9.9.9.jar").touch()  # no marker: a previous fetch died half-way
    assert cached_libs(tmp_path / "cache", "9.9.9") is None
    with pytest.raises(LocalKafkaError, match="`no-such-mvn` not found on PATH"):
        ensure_jars(tmp_path / "cache", "9.9.9", mvn="no-such-mvn")


def test_maven_failure_message_and_cleanup(tmp_path: Path) -> None:
    mvn = _fake_mvn(tmp_path, 'echo "[ERROR] Could not resolve dependencies for project x" >&2\nexit 1\n')
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    with pytest.raises(LocalKafkaError, match=r"Maven failed \(exit 1\).*Could not resolve dependencies"):
        ensure_jars(tmp_path / "cache", "9.9.9", mvn=mvn, pom=pom)
    assert not (tmp_path / "cache" / "kafka-9.9.9" / "libs").exists()
    assert not (tmp_path / "cache" / "kafka-9.9.9" / "libs.partial").exists()


def test_missing_java_fails_before_anything_runs(settings: Settings) -> None:
    with pytest.raises(LocalKafkaError, match="`no-such-java` not found on PATH"):
        start_broker(settings, java="no-such-java")


def test_stop_is_harmless_when_nothing_runs(settings: Settings, layout: BrokerLayout) -> None:
    assert stop_broker(settings) is None
    layout.root.mkdir(parents=True)
    layout.pid_file.write_text(f"{os.getpid()}\n")  # a live pid that is not our broker: never killed
    assert running_pid(layout) is None
    assert stop_broker(settings) is None
    assert not layout.pid_file.exists()


def test_port_in_use_detection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


def _wait_for_line(log: Path, line: str) -> None:
    deadline = time.monotonic() + 20
    while tail(log) != line:
        assert time.monotonic() < deadline, f"child never printed {line!r}"
        time.sleep(0.05)


def test_spawn_detached_and_terminate(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    log.write_text("previous run\n")
    code = "import time; print('hello', flush=True); time.sleep(60)"
    pid = spawn_detached([sys.executable, "-c", code], log, cwd=tmp_path)
    assert process_argv(pid) is not None
    assert os.getsid(pid) == pid  # own session: a Ctrl-C in our terminal does not reach it
    _wait_for_line(log, "hello")
    assert terminate(pid, timeout_s=10)
    assert process_argv(pid) is None
    assert (tmp_path / "child.log.1").read_text() == "previous run\n"


def test_terminate_escalates_to_sigkill(tmp_path: Path) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    pid = spawn_detached([sys.executable, "-c", code], log, cwd=tmp_path)
    _wait_for_line(log, "ready")
    assert terminate(pid, timeout_s=0.5)
    assert process_argv(pid) is None


def test_tail_reads_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert tail(path, 3).splitlines() == ["line 997", "line 998", "line 999"]
    assert tail(tmp_path / "missing") == ""


def test_file_lock_is_reentrant_and_exclusive_across_processes(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    with file_lock(lock), file_lock(lock):  # re-entering in one thread must not deadlock
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import fcntl, os; fd = os.open({str(lock)!r}, os.O_RDWR); "
                "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)",
            ],
            capture_output=True,
            check=False,
        )
        assert other.returncode != 0  # another process cannot take it
    with file_lock(lock):  # released again after the outer block
        pass


def test_dead_leases_are_dropped(layout: BrokerLayout) -> None:
    sessions = layout.root / "sessions"
    sessions.mkdir(parents=True)
    (sessions / str(os.getpid())).write_text("me\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (sessions / str(dead.pid)).write_text("gone\n")
    (sessions / "junk").write_text("?\n")
    assert live_leases(layout) == [os.getpid()]
    assert sorted(p.name for p in sessions.iterdir()) == [str(os.getpid())]
