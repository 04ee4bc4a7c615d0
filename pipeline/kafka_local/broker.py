"""Start, stop and inspect the single-node KRaft broker that runs from ``<state_dir>/kafka``.

"Our broker" means a live process whose command line is ``kafka.Kafka <our server.properties>``; a pid file
alone is never trusted (pids are reused). Every mutating call holds a file lock on the state dir.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pipeline.kafka_local import admin
from pipeline.kafka_local.config import (
    DEFAULT_HEAP,
    BrokerLayout,
    LocalKafkaError,
    broker_command,
    cluster_id_from_meta,
    format_command,
    is_broker_cmdline,
    is_valid_cluster_id,
    new_cluster_id,
    render_log4j_properties,
    render_server_properties,
)
from pipeline.kafka_local.jars import ensure_jars, require_executable
from pipeline.kafka_local.locking import file_lock
from pipeline.kafka_local.process import (
    find_pids,
    port_in_use,
    process_argv,
    read_pid,
    spawn_detached,
    tail,
    terminate,
)
from pipeline.settings import Settings

Report = Callable[[str], None]
LOG_TAIL_LINES = 20


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class StartResult:
    """Outcome of :func:`start_broker`. ``external`` means some other Kafka already serves the port."""

    bootstrap: str
    pid: int | None
    started: bool
    external: bool
    seconds: float


@dataclass(frozen=True)
class BrokerStatus:
    """``running``: something answers metadata at ``bootstrap``; ``pid``: our broker's pid if it is alive."""

    running: bool
    pid: int | None
    bootstrap: str
    log_file: Path
    topics: dict[str, int] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        """True when the broker answering is the one started from this state dir."""
        return self.pid is not None


def running_pid(layout: BrokerLayout) -> int | None:
    """Pid of our live broker: from the pid file if it still names it, else found by command line."""
    pid = read_pid(layout.pid_file)
    if pid is not None and (argv := process_argv(pid)) is not None and is_broker_cmdline(argv, layout):
        return pid
    found = find_pids(str(layout.server_properties))
    return found[0] if found else None


def _cluster_id(layout: BrokerLayout) -> str:
    """The cluster id of this state dir: the formatted one if storage exists, else stored or new."""
    if layout.formatted_marker.is_file():
        formatted = cluster_id_from_meta(layout.formatted_marker.read_text())
        if formatted:
            layout.cluster_id_file.write_text(formatted + "\n")
            return formatted
    if layout.cluster_id_file.is_file():
        stored = layout.cluster_id_file.read_text().strip()
        if is_valid_cluster_id(stored):
            return stored
    cluster_id = new_cluster_id()
    layout.cluster_id_file.write_text(cluster_id + "\n")
    return cluster_id


def _format_storage(java: str, layout: BrokerLayout, report: Report, extra_args: Sequence[str] = ()) -> None:
    if layout.formatted_marker.is_file():
        return
    cluster_id = _cluster_id(layout)
    report(f"formatting KRaft storage in {layout.data_dir} (cluster id {cluster_id}) …")
    done = subprocess.run(
        format_command(java, layout, cluster_id, extra_args), capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        last = output.splitlines()[-1] if output else "(no output)"
        raise LocalKafkaError(f"formatting Kafka storage failed (exit {done.returncode}): {last}", output)


def _check_ports(layout: BrokerLayout) -> None:
    for port, role in ((layout.port, "client"), (layout.controller_port, "controller")):
        if port_in_use(layout.host, port):
            raise LocalKafkaError(
                f"port {port} on {layout.host} (the local broker's {role} port) is already in use by "
                "another process; free it or pick another port "
                "(OMNISTREAM_BROKER_PORT / OMNISTREAM_CONTROLLER_PORT)"
            )


def _check_same_listeners(layout: BrokerLayout, pid: int) -> None:
    """A running broker cannot change ports: fail fast instead of waiting for metadata on the wrong port."""
    try:
        current = _listeners(layout.server_properties.read_text())
    except FileNotFoundError:
        return
    wanted = _listeners(render_server_properties(layout, partitions=1))
    if current != wanted:
        raise LocalKafkaError(
            f"the broker from {layout.root} (pid {pid}) runs with listeners {current}, not {wanted}; "
            "run `omnistream kafka down` first to change its ports"
        )


def _listeners(server_properties: str) -> str:
    for line in server_properties.splitlines():
        if line.startswith("listeners="):
            return line.partition("=")[2].strip()
    return ""


def _death_reason(pid: int, layout: BrokerLayout) -> str | None:
    """None while the broker process lives; else why it died, naming a bind failure when the log shows one."""
    if process_argv(pid) is not None:
        return None
    for line in reversed(tail(layout.log_file, 200).splitlines()):
        if "Address already in use" in line or "failed to bind" in line:
            return f"broker process {pid} exited: a port is already in use ({line.strip()[:200]})"
    return f"broker process {pid} exited during start (log: {layout.log_file})"


def start_broker(
    settings: Settings,
    *,
    java: str = "java",
    mvn: str = "mvn",
    heap: tuple[str, ...] = DEFAULT_HEAP,
    pom: Path | None = None,
    report: Report = _quiet,
    extra_properties: Mapping[str, str] | None = None,
    format_args: Sequence[str] = (),
) -> StartResult:
    """Make sure a broker answers at the local bootstrap, starting ours if needed. Idempotent.

    - our broker already running: waits until it answers metadata, returns ``started=False``;
    - another Kafka already answers on the client port: returns ``external=True`` and starts nothing;
    - otherwise: fetches jars if not cached, formats storage once, starts the JVM detached and returns once
      metadata really answers (``settings.broker_start_timeout_s``).
    Raises LocalKafkaError for missing java/mvn, Maven failures, ports held by non-Kafka processes, or a
    broker that dies or stays silent during start (then it is stopped and the log tail is in ``details``).
    ``extra_properties`` and ``format_args``: see ``render_server_properties`` and ``format_command``.
    """
    layout = BrokerLayout.from_settings(settings)
    timeout_s = settings.broker_start_timeout_s
    java_path = require_executable(java, "run the local Kafka broker (install a JDK 17, e.g. openjdk-17-jre)")
    layout.root.mkdir(parents=True, exist_ok=True)
    with file_lock(layout.lock_file):
        started = time.monotonic()
        pid = running_pid(layout)
        if pid is not None:
            running = pid
            _check_same_listeners(layout, running)
            layout.pid_file.write_text(f"{running}\n")
            report(f"broker already running (pid {running}); waiting for metadata …")
            admin.wait_ready(layout.bootstrap, timeout_s, abort=lambda: _death_reason(running, layout))
            return StartResult(layout.bootstrap, running, False, False, time.monotonic() - started)
        layout.pid_file.unlink(missing_ok=True)
        if port_in_use(layout.host, layout.port) and admin.probe(layout.bootstrap):
            report(f"another Kafka broker (not started from {layout.root}) already serves {layout.bootstrap}")
            return StartResult(layout.bootstrap, None, False, True, time.monotonic() - started)
        _check_ports(layout)
        libs = ensure_jars(settings.kafka_cache_dir, settings.kafka_version, mvn=mvn, pom=pom, report=report)
        layout = replace(layout, libs=libs)
        layout.server_properties.write_text(render_server_properties(layout, settings.partitions, extra_properties))
        layout.log4j_properties.write_text(render_log4j_properties())
        _format_storage(java_path, layout, report, format_args)
        new_pid = spawn_detached(broker_command(java_path, layout, heap), layout.log_file, cwd=layout.root)
        layout.pid_file.write_text(f"{new_pid}\n")
        report(f"starting Kafka {settings.kafka_version} broker (pid {new_pid}, log {layout.log_file}) …")
        try:
            admin.wait_ready(layout.bootstrap, timeout_s, abort=lambda: _death_reason(new_pid, layout))
        except LocalKafkaError as exc:
            terminate(new_pid, timeout_s=10.0)
            layout.pid_file.unlink(missing_ok=True)
            raise LocalKafkaError(exc.message, details=tail(layout.log_file, LOG_TAIL_LINES)) from exc
        return StartResult(layout.bootstrap, new_pid, True, False, time.monotonic() - started)


def stop_broker(settings: Settings, *, timeout_s: float = 30.0, purge: bool = False) -> int | None:
    """Stop our broker (SIGTERM, then SIGKILL after ``timeout_s``) and remove its pid file.

    Harmless when nothing runs. ``purge`` also deletes the data dir (topics and offsets are lost).
    Returns the pid that was stopped, or None. Never touches a Kafka that was not started from here.
    """
    layout = BrokerLayout.from_settings(settings)
    if not layout.root.exists():
        return None
    with file_lock(layout.lock_file):
        pid = running_pid(layout)
        if pid is not None and not terminate(pid, timeout_s):
            raise LocalKafkaError(f"broker pid {pid} did not exit even after SIGKILL")
        layout.pid_file.unlink(missing_ok=True)
        if purge:
            shutil.rmtree(layout.data_dir, ignore_errors=True)
            layout.cluster_id_file.unlink(missing_ok=True)
        return pid


def broker_status(settings: Settings, *, timeout_s: float = 3.0) -> BrokerStatus:
    """What runs at the local bootstrap: liveness by metadata, our pid, and topics with partition counts."""
    layout = BrokerLayout.from_settings(settings)
    pid = running_pid(layout)
    running = admin.probe(layout.bootstrap, timeout_s=timeout_s)
    topics = admin.list_topics(layout.bootstrap, timeout_s=timeout_s) if running else {}
    return BrokerStatus(running, pid, layout.bootstrap, layout.log_file, topics)
