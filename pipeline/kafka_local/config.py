"""Pure parts of the local broker: file layout, rendered config files, cluster id and java command lines.

Nothing here starts a process or touches the network, so all of it is unit-tested without Java.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import Settings

#: Heap of the local broker. Small on purpose: it shares a 2-core dev machine with workers and tests.
DEFAULT_HEAP = ("-Xmx512m", "-Xms256m")

# Kafka's Uuid.randomUuid() rejects these two ids (and ids whose text starts with "-", which would
# parse as a command-line flag); we follow the same rules so StorageTool accepts every id we generate.
_RESERVED_IDS = frozenset({"AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAQ"})


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, started, reached or stopped.

    ``str(error)`` is a one-line human message; ``details`` holds optional extra text (e.g. a log tail).
    """

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details


@dataclass(frozen=True)
class BrokerLayout:
    """Every path and port of one local broker. Paths are absolute, so the JVM's cwd does not matter."""

    root: Path
    libs: Path
    host: str
    port: int
    controller_port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerLayout:
        """Layout for ``settings``: state under ``<state_dir>/kafka``, jars under the version's cache dir."""
        return cls(
            root=(settings.state_dir / "kafka").expanduser().resolve(),
            libs=jar_dir(settings.kafka_cache_dir, settings.kafka_version) / "libs",
            host="127.0.0.1",
            port=settings.broker_port,
            controller_port=settings.controller_port,
        )

    @property
    def bootstrap(self) -> str:
        """Bootstrap string clients use to reach this broker."""
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        """KRaft metadata log and topic partitions (``log.dirs``)."""
        return self.root / "data"

    @property
    def server_properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.root / "log4j.properties"

    @property
    def log_file(self) -> Path:
        """Broker log: log4j output and anything the JVM prints (one file per start, previous kept as .1)."""
        return self.root / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster-id"

    @property
    def lock_file(self) -> Path:
        """flock target that serialises concurrent ``up``/``down`` on the same state dir."""
        return self.root / ".lock"

    @property
    def formatted_marker(self) -> Path:
        """Written by StorageTool format; its presence means the storage is formatted."""
        return self.data_dir / "meta.properties"


def jar_dir(cache_dir: Path, version: str) -> Path:
    """Cache directory of one Kafka version; jars live in its ``libs`` subdirectory."""
    return cache_dir.expanduser().resolve() / f"kafka-{version}"


def new_cluster_id() -> str:
    """A random cluster id in Kafka's format: 16 random bytes, base64url without padding (22 chars)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if text not in _RESERVED_IDS and not text.startswith("-"):
            return text


def is_valid_cluster_id(text: str) -> bool:
    """True when ``text`` decodes to exactly 16 bytes of base64url (what StorageTool accepts)."""
    if len(text) != 22 or text.startswith("-"):
        return False
    try:
        return len(base64.urlsafe_b64decode(text + "==")) == 16
    except ValueError:
        return False


def cluster_id_from_meta(meta_properties: str) -> str | None:
    """The ``cluster.id`` recorded in a formatted data dir's meta.properties, if any."""
    for line in meta_properties.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    return None


def render_server_properties(layout: BrokerLayout, partitions: int, extra: Mapping[str, str] | None = None) -> str:
    """server.properties for a single-node KRaft broker (combined broker+controller, all RFs 1).

    ``extra`` overrides or adds properties (e.g. a SASL listener: ``listeners``, ``sasl.enabled.mechanisms``,
    a ``listener.name.<l>.<mechanism>.sasl.jaas.config``); the PLAINTEXT listener on ``layout.port`` must stay,
    because readiness is checked through it.
    """
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{layout.host}:{layout.controller_port}",
        "listeners": f"PLAINTEXT://{layout.host}:{layout.port},CONTROLLER://{layout.host}:{layout.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{layout.host}:{layout.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(layout.data_dir),
        "num.partitions": str(partitions),
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "min.insync.replicas": "1",
        # A single local consumer group should not wait 3 s for members that will never come.
        "group.initial.rebalance.delay.ms": "0",
        # Kept on: clients (and Faust) that produce to a missing topic keep working locally;
        # the project still creates its own topics explicitly with the configured partition count.
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        # A dev broker: keep a week of data, small segments so retention can actually delete.
        "log.retention.hours": "168",
        "log.segment.bytes": str(256 * 1024 * 1024),
        "num.recovery.threads.per.data.dir": "1",
    }
    props.update(extra or {})
    lines = ["# Generated by omnistream (pipeline/kafka_local); rewritten on every start.", ""]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def render_log4j_properties() -> str:
    """log4j 1.x config: INFO to stdout (which the launcher sends to the log file), noisy loggers at WARN."""
    return "\n".join(
        [
            "# Generated by omnistream: the broker's stdout is redirected to broker.log.",
            "log4j.rootLogger=INFO, stdout",
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender",
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n",
            # These log every request, every partition state change and every config dump at INFO.
            "log4j.logger.kafka.request.logger=WARN",
            "log4j.logger.state.change.logger=WARN",
            "log4j.logger.kafka.server.KafkaConfig=WARN",
            "log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN",
            # Several lines per partition created or loaded; with per-test topics that drowns the rest.
            "log4j.logger.kafka.log=WARN",
            "log4j.logger.kafka.cluster=WARN",
            "log4j.logger.kafka.coordinator.group.GroupMetadataManager=WARN",
            "log4j.logger.org.apache.kafka.storage.internals.log=WARN",
            "log4j.logger.org.apache.kafka.clients=WARN",
            "",
        ]
    )


def _java_base(java: str, layout: BrokerLayout) -> list[str]:
    return [
        java,
        f"-Dlog4j.configuration=file:{layout.log4j_properties}",
        "-Djava.awt.headless=true",
        "-cp",
        f"{layout.libs}/*",
    ]


def format_command(java: str, layout: BrokerLayout, cluster_id: str, extra_args: Sequence[str] = ()) -> list[str]:
    """StorageTool command that formats the KRaft storage once (``--ignore-formatted`` keeps reruns safe).

    ``extra_args`` are passed on, e.g. ``--add-scram SCRAM-SHA-512=[name=u,password=p]`` to create SCRAM users
    in the metadata log before the broker first starts.
    """
    return [
        *_java_base(java, layout),
        "kafka.tools.StorageTool",
        "format",
        "--ignore-formatted",
        "-t",
        cluster_id,
        "-c",
        str(layout.server_properties),
        *extra_args,
    ]


def broker_command(java: str, layout: BrokerLayout, heap: tuple[str, ...] = DEFAULT_HEAP) -> list[str]:
    """Command that runs the broker in the foreground (the launcher detaches it)."""
    base = _java_base(java, layout)
    return [
        base[0],
        *heap,
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        *base[1:],
        "kafka.Kafka",
        str(layout.server_properties),
    ]


def parse_heap(spec: str) -> tuple[str, ...]:
    """JVM heap flags from a size like ``"512m"`` (max; initial half) or explicit ``"-Xmx1g -Xms1g"``."""
    spec = spec.strip()
    if spec.startswith("-"):
        return tuple(spec.split())
    number, unit = spec[:-1], spec[-1:].lower()
    if not number.isdigit() or unit not in {"m", "g"}:
        raise LocalKafkaError(f"invalid heap size {spec!r}: use e.g. 512m or 1g")
    megabytes = int(number) * (1024 if unit == "g" else 1)
    return (f"-Xmx{megabytes}m", f"-Xms{max(megabytes // 2, 64)}m")


def is_broker_cmdline(argv: list[str], layout: BrokerLayout) -> bool:
    """True when a process command line is *this* layout's broker (not another Kafka, not a reused pid)."""
    return "kafka.Kafka" in argv and str(layout.server_properties) in argv
