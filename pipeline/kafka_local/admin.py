"""Small admin helpers over kafka-python's KafkaAdminClient: readiness, idempotent topic create/delete."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import kafka.errors as kafka_errors
from kafka.admin import KafkaAdminClient

from pipeline.kafka_local.config import LocalKafkaError

_CLIENT_ID = "omnistream-admin"
# Error codes that mean "already in the state you asked for": the calls below are idempotent.
_TOPIC_ALREADY_EXISTS = kafka_errors.TopicAlreadyExistsError.errno
_UNKNOWN_TOPIC = kafka_errors.UnknownTopicOrPartitionError.errno


@contextmanager
def admin_client(
    bootstrap: str, timeout_s: float = 10.0, client_config: Mapping[str, Any] | None = None
) -> Iterator[Any]:
    """A connected KafkaAdminClient, closed on exit.

    Construction already fetches cluster metadata, so this raises LocalKafkaError if the cluster does not
    answer within ``timeout_s``.
    """
    timeout_ms = max(int(timeout_s * 1000), 500)
    try:
        client = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id=_CLIENT_ID,
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=max(timeout_ms, 3000),
            **(client_config or {}),
        )
    except kafka_errors.KafkaError as exc:
        raise LocalKafkaError(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f} s ({exc})") from exc
    try:
        yield client
    finally:
        client.close()


def _accepts_connections(bootstrap: str, timeout_s: float) -> bool:
    """True when at least one bootstrap address accepts a TCP connection."""
    for address in filter(None, (part.strip() for part in bootstrap.split(","))):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout=timeout_s):
                return True
        except (OSError, ValueError):
            continue
    return False


def probe(bootstrap: str, timeout_s: float = 3.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request and lists itself within the timeout."""
    # A refused connection is a definite "no": answer at once instead of retrying until the timeout.
    if not _accepts_connections(bootstrap, min(timeout_s, 2.0)):
        return False
    try:
        with admin_client(bootstrap, timeout_s) as client:
            cluster = client.describe_cluster()
            return bool(cluster.get("brokers"))
    except Exception:  # any failure (refused, timeout, protocol garbage) just means "not usable yet"
        return False


def wait_ready(
    bootstrap: str,
    timeout_s: float,
    *,
    abort: Callable[[], str | None] | None = None,
) -> float:
    """Block until a broker at ``bootstrap`` answers metadata with at least one live broker.

    An open port is not enough: a starting broker accepts connections well before it serves requests.
    ``abort`` is polled between attempts; a non-None return (e.g. "broker process exited") stops the wait
    with that reason. Returns the seconds waited; raises LocalKafkaError on timeout or abort.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if probe(bootstrap, timeout_s=min(max(remaining, 0.5), 5.0)):
            return time.monotonic() - started
        if abort is not None and (reason := abort()) is not None:
            raise LocalKafkaError(f"Kafka at {bootstrap} never became ready: {reason}")
        if time.monotonic() >= deadline:
            raise LocalKafkaError(f"Kafka at {bootstrap} did not answer metadata within {timeout_s:.0f} s")
        time.sleep(0.25)


def list_topics(bootstrap: str, *, include_internal: bool = False, timeout_s: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count, sorted by name. Internal topics (``__consumer_offsets``) are hidden."""
    with admin_client(bootstrap, timeout_s) as client:
        described = client.describe_topics()
    topics = {
        str(topic["name"]): len(topic.get("partitions") or [])
        for topic in described
        if include_internal or not (topic.get("is_internal") or str(topic["name"]).startswith("__"))
    }
    return dict(sorted(topics.items()))


def ensure_topics(
    bootstrap: str,
    names: Sequence[str],
    partitions: int,
    replication_factor: int,
    *,
    configs: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    client_config: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Create each topic in ``names`` that does not exist yet; existing topics are left untouched.

    ``configs`` (topic-level settings such as ``cleanup.policy``) apply to the topics this call creates.

    Returns name -> partition count as the cluster reports it, so callers can notice an existing topic
    with a different count (we never add partitions: that would move keys to other partitions).
    On return every topic has a leader for every partition. Raises LocalKafkaError on any other error.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    spec: dict[str, object] = {"num_partitions": partitions, "replication_factor": replication_factor}
    if configs:
        spec["configs"] = dict(configs)
    request = {name: dict(spec) for name in wanted}
    with admin_client(bootstrap, timeout_s, client_config) as client:
        response = client.create_topics(request, timeout_ms=int(timeout_s * 1000), raise_errors=False)
        failures = [
            f"{topic['name']}: {kafka_errors.for_code(topic['error_code']).__name__}"
            + (f" ({topic['error_message']})" if topic.get("error_message") else "")
            for topic in response["topics"]
            if topic["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise LocalKafkaError("could not create topics: " + "; ".join(failures))
        try:
            client.wait_for_topics(wanted, timeout_ms=int(timeout_s * 1000))
        except kafka_errors.KafkaTimeoutError as exc:
            raise LocalKafkaError(f"topics created but not ready: {exc}") from exc
        described = client.describe_topics(wanted)
    counts = {str(t["name"]): len(t.get("partitions") or []) for t in described}
    return {name: counts[name] for name in wanted if name in counts}


def delete_topics(bootstrap: str, names: Sequence[str], *, timeout_s: float = 30.0) -> list[str]:
    """Delete the topics in ``names``; topics that do not exist are ignored. Returns the names deleted."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    with admin_client(bootstrap, timeout_s) as client:
        response = client.delete_topics(wanted, timeout_ms=int(timeout_s * 1000), raise_errors=False)
    deleted, failures = [], []
    for topic in response["topics"]:
        code = topic["error_code"]
        if code == 0:
            deleted.append(str(topic["name"]))
        elif code != _UNKNOWN_TOPIC:
            failures.append(f"{topic['name']}: {kafka_errors.for_code(code).__name__}")
    if failures:
        raise LocalKafkaError("could not delete topics: " + "; ".join(failures))
    return deleted
