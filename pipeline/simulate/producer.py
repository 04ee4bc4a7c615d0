"""Sending the simulated stream: to Kafka (``KafkaSink``), a JSON-lines file (``FileSink``) or nowhere.

:func:`produce` encodes each message, hands it to a sink, paces to ``rate`` and shows progress.
Guarantees: every message is either acknowledged by the sink or counted as failed in the returned
:class:`ProduceReport` (with the first errors' text), so a caller can tell "all delivered" from "some
lost" and exit non-zero; nothing is silently dropped. ``KafkaSink`` uses acks=all with the idempotent
producer (kafka-python's default), so broker-side retries do not add duplicates of their own.
Not guaranteed: Kafka delivery *order* across partitions (only per key, i.e. per partition).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from pipeline.simulate.messages import Encoder, SimMessage, encode_message

_MAX_ERRORS_KEPT = 10


class DeliveryError(RuntimeError):
    """Sending could not start (broker or topic unavailable); per-message failures go in the report."""


@dataclass
class ProduceReport:
    """What happened to the messages handed to :func:`produce`."""

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    per_topic: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """Every message was acknowledged."""
        return self.failed == 0 and self.delivered == self.sent


class Sink(Protocol):
    """Where encoded messages go. ``send`` may be asynchronous; ``close`` waits and reports the outcome."""

    def send(self, topic: str, key: bytes, value: bytes, msg: SimMessage) -> None: ...

    def close(self, report: ProduceReport) -> None: ...


class NullSink:
    """Encodes but sends nowhere (``--dry-run``): every message counts as delivered."""

    def send(self, topic: str, key: bytes, value: bytes, msg: SimMessage) -> None:
        return None

    def close(self, report: ProduceReport) -> None:
        report.delivered = report.sent


class FileSink:
    """JSON lines ``{topic, key_b64, value_b64, kind, expected, event_id}`` for replay and inspection."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = path.open("w", encoding="utf-8")

    def send(self, topic: str, key: bytes, value: bytes, msg: SimMessage) -> None:
        line = {
            "topic": topic,
            "key_b64": base64.b64encode(key).decode(),
            "value_b64": base64.b64encode(value).decode(),
            "kind": msg.kind,
            "expected": msg.expected,
            "event_id": msg.event_id,
        }
        self._fh.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self, report: ProduceReport) -> None:
        self._fh.close()
        report.delivered = report.sent


def compression_type() -> str | None:
    """``lz4`` when the lz4 package is installed (cheap CPU, ~3x smaller), else no compression."""
    from kafka.codec import has_lz4

    return "lz4" if has_lz4() else None


class KafkaSink:
    """kafka-python producer with delivery accounting. Construct it, then :meth:`check_topics`."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "omnistream-simulate",
        max_block_ms: int = 15_000,
        client_config: Mapping[str, Any] | None = None,
    ) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self._kafka_error: type[Exception] = KafkaError
        self.bootstrap = bootstrap
        try:
            self._producer: Any = KafkaProducer(
                bootstrap_servers=[s.strip() for s in bootstrap.split(",") if s.strip()],
                client_id=client_id,
                acks="all",
                linger_ms=20,
                batch_size=256 * 1024,
                compression_type=compression_type(),
                max_block_ms=max_block_ms,
                # The oversized bad input is 100 KB; keep well above it so it reaches ingest's size check.
                max_request_size=4 * 1024 * 1024,
                **(client_config or {}),
            )
        except KafkaError as exc:
            raise DeliveryError(f"cannot connect to Kafka at {bootstrap}: {exc!r}") from exc
        self._lock = threading.Lock()
        self._acked = 0
        self._failed = 0
        self._errors: list[str] = []

    def check_topics(self, topics: Iterable[str]) -> dict[str, int]:
        """Fail fast, with a clear message, when an input topic does not exist (before sending anything);
        returns each topic's partition count."""
        counts: dict[str, int] = {}
        for topic in topics:
            try:
                partitions = self._producer.partitions_for(topic)
            except self._kafka_error as exc:
                partitions, detail = None, repr(exc)
            else:
                detail = "no partitions"
            if not partitions:
                self._producer.close(timeout=5)
                raise DeliveryError(
                    f"topic {topic!r} is not available on {self.bootstrap} ({detail}); "
                    "create the topics first (omnistream kafka up)"
                )
            counts[topic] = len(partitions)
        return counts

    def _on_ok(self, _metadata: Any) -> None:
        with self._lock:
            self._acked += 1

    def _on_error(self, exc: BaseException) -> None:
        with self._lock:
            self._failed += 1
            if len(self._errors) < _MAX_ERRORS_KEPT:
                self._errors.append(repr(exc))

    def send(self, topic: str, key: bytes, value: bytes, msg: SimMessage) -> None:
        try:
            future = self._producer.send(topic, key=key, value=value)
        except self._kafka_error as exc:  # buffer full past max_block_ms, metadata gone, too large, ...
            self._on_error(exc)
            return
        future.add_callback(self._on_ok)
        future.add_errback(self._on_error)

    def close(self, report: ProduceReport, timeout_s: float = 120.0) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except self._kafka_error as exc:
            self._on_error(exc)
        finally:
            self._producer.close(timeout=10)
        with self._lock:
            report.delivered = self._acked
            # Anything neither acknowledged nor failed by now never will be: count it as lost.
            report.failed = report.sent - self._acked
            report.errors.extend(self._errors)
            if self._acked + self._failed < report.sent:
                report.errors.append(f"{report.sent - self._acked - self._failed} messages unacknowledged at close")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} msg/s" if speed else "- msg/s", style="progress.data.speed")


def produce(
    messages: Iterable[SimMessage],
    sink: Sink,
    encoder: Encoder,
    topics: Mapping[str, str],
    *,
    total: int | None = None,
    rate: float | None = None,
    observe: Callable[[SimMessage], None] | None = None,
    console: Console | None = None,
    show_progress: bool = True,
) -> ProduceReport:
    """Encode and send every message to ``topics[msg.channel]``; ``observe`` sees each one as it is sent."""
    report = ProduceReport()
    columns = (
        TextColumn("[bold]producing"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    start = time.monotonic()
    with Progress(*columns, console=console, disable=not show_progress, transient=False) as progress:
        task = progress.add_task("produce", total=total)
        for msg in messages:
            value = encode_message(msg, encoder)
            topic = topics[msg.channel]
            sink.send(topic, msg.key, value, msg)
            report.sent += 1
            report.bytes += len(value)
            report.per_topic[topic] += 1
            if observe is not None:
                observe(msg)
            if rate:
                # Pace against the schedule, not per message, so a slow send is caught up afterwards.
                ahead = start + report.sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if rate or report.sent % 512 == 0:
                progress.update(task, completed=report.sent)
        progress.update(task, completed=report.sent, total=total or report.sent)
        sink.close(report)
    report.elapsed_s = time.monotonic() - start
    return report
