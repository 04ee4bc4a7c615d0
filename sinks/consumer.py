"""The sink's consumer loop: Kafka in, decoded Arrow batches out to the writer, which runs in its own process.

Why not Faust: a stream processor acknowledges offsets itself; the sink must resume from the offsets stored
*in DuckDB* with the rows, so it drives a plain kafka-python consumer and controls positions itself.

Why manual partition assignment and no consumer group membership: DuckDB allows one read-write process per
file, so there is exactly one sink per warehouse; a group would add rebalances (and the duty to seek on every
assignment) and buy nothing, since a second sink could not open the file anyway. The loop assigns every
partition of its topics, seeks each to the next offset committed in DuckDB (the beginning when none), and
re-reads the topic metadata every ``refresh_s`` so partitions added later, and topics created after the sink
started (a stage deployed later), are picked up. It never triggers topic auto-creation (it lists topics
before asking for partitions). A stored offset beyond the end of a partition (the topic was deleted and
recreated) falls back to the earliest offset; the table keys then keep rows from doubling.

When ``lag_group`` is set, the batch's next offsets are also committed to Kafka under that group *after*
DuckDB committed, only so that ``kafka-consumer-groups`` and lag exporters can see how far behind the sink is.
They are never read back.

Processes: this loop runs on the calling thread (the main thread of ``omnistream sink``): it polls, decodes,
builds batches and converts them to Arrow (``sinks.columnar.prepare``), and hands each prepared batch to the
writer with ``submit``. ``omnistream sink`` passes a :class:`~sinks.process_writer.ProcessWriter`: every DuckDB
call runs in a child process, so batch N+1 is fetched, decoded and converted while the child commits batch N
(one batch in flight: at most two batches in memory), and the two use both cores. Not a thread: DuckDB's
Python client takes the GIL back many times per statement, and with a busy Python thread next to it a 0.1 s
MERGE took over a second (docs/warehouse.md). The loop waits for the writer only to settle the previous batch
before submitting the next one, and to publish snapshots. With an in-process writer (``DuckDBSink``) the same
loop runs, just without overlap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTP
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from pipeline.privacy.suppression import Suppression
from schemas.codec import AvroCodec
from schemas.errors import RegistryUnavailableError
from sinks.columnar import prepare
from sinks.contract import Batch, PendingWrite, Reject, SinkInfraError, SinkRow, SinkWriter, TopicPartition
from sinks.erasure import ErasureMessage
from sinks.tables import BoundTable

log = logging.getLogger(__name__)
_POLL_SLICE_S = 0.2  # upper bound on how long a stop request waits for poll() to return
_OUTAGE_RETRY_S = 2.0  # how soon metadata is asked again while the broker does not answer


@dataclass(frozen=True)
class LoopConfig:
    """How the loop batches and how often it publishes snapshots."""

    bootstrap: str
    batch_size: int = 50_000
    batch_max_ms: int = 1_000
    snapshot_interval_s: float = 10.0
    lag_group: str | None = None
    refresh_s: float = 30.0
    progress_s: float = 30.0
    #: Broker errors (metadata refresh) are retried this long before the loop gives up with ``SinkInfraError``.
    retry_budget_s: float = 300.0
    #: The suppression list's topic (``privacy-suppressions``): read like a table's, applied by ``sinks.erasure``.
    erasure_topic: str | None = None
    #: Security settings for the Kafka client (``pipeline.security.settings_client_config``); never logged.
    client_config: Mapping[str, Any] = field(default_factory=dict, repr=False)


class SinkLoop:
    """Consume the tables' topics into ``writer`` until ``stop`` is set.

    Guarantees: a message's row is committed (with its offset) before that offset is committed anywhere else;
    on stop the batch being collected is written, the in-flight one awaited, a final snapshot published and
    the writer closed. Any error from the writer (``SinkInfraError`` after its retries, or a bug) propagates
    out of ``run`` with nothing further committed: the caller exits non-zero.

    Does not guarantee: that a message is written within ``batch_max_ms`` when DuckDB is slower than the
    topic (batches then queue in Kafka, not in memory: at most two batches are held).
    """

    def __init__(
        self,
        config: LoopConfig,
        writer: SinkWriter,
        tables: list[BoundTable],
        codec: AvroCodec,
        consumer_factory: Callable[..., Any] = KafkaConsumer,
        clock: Callable[[], float] = time.monotonic,
        on_beat: Callable[[], None] = lambda: None,
        on_lag: Callable[[Mapping[str, int]], None] = lambda _lag: None,
    ) -> None:
        self.config = config
        self._beat = on_beat
        self._on_lag = on_lag
        self.writer = writer
        self.tables = tables
        self.codec = codec
        self._consumer_factory = consumer_factory
        self._by_topic = {t.topic: t for t in tables}
        self._by_name = {t.name: t for t in tables}
        self._subjects = {t.topic: (t.spec.subject,) for t in tables}
        self._stored: dict[TopicPartition, int] = {}  # next offset per partition whose rows are in DuckDB
        self._assigned: set[KafkaTP] = set()
        self._missing_warned: set[str] = set()
        self._down_since: float | None = None  # since when the broker does not answer metadata requests
        self._clock = clock
        self.batches = 0
        self.messages = 0

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (then shut down cleanly) or the writer fails (then raise).

        Call from the thread that lives as long as the sink (a process writer's child is tied to it)."""
        clean = False
        try:
            committed = self.writer.open()
            log.info("sink resumes %d partitions from offsets stored in DuckDB", len(committed))
            consumer = self._connect(stop)
            if consumer is None:  # stopped while waiting for the broker: nothing was read
                clean = True
                return
            try:
                self._loop(consumer, committed, stop)
                clean = True
            finally:
                consumer.close(autocommit=False)
        finally:
            if clean:
                self.writer.close()
            else:  # the error being raised matters more than one from closing
                with contextlib.suppress(Exception):
                    self.writer.close()

    def readiness(self) -> str | None:
        """Why the sink is not ready (None: ready): it has its partitions and the broker answers."""
        if not self._assigned:
            return "no partitions assigned yet"
        if self._down_since is not None:
            return "Kafka does not answer"
        return None

    def _connect(self, stop: threading.Event) -> Any:
        """The Kafka consumer, once the broker answers (within ``retry_budget_s``); None when stopped first."""
        started = self._clock()
        while True:
            self._beat()  # waiting out an outage is not being stuck
            try:
                return self._consumer_factory(
                    bootstrap_servers=self.config.bootstrap.split(","),
                    group_id=self.config.lag_group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    max_poll_records=self.config.batch_size,
                    max_partition_fetch_bytes=4 * 1024 * 1024,
                    metadata_max_age_ms=int(self.config.refresh_s * 1000),
                    **self.config.client_config,
                )
            except KafkaError as error:
                self._within_budget(error, started, "Kafka not reachable")
                if stop.wait(_OUTAGE_RETRY_S):
                    return None

    def _loop(self, consumer: Any, committed: dict[TopicPartition, int], stop: threading.Event) -> None:
        self._stored = dict(committed)
        self._refresh(consumer)
        pending: tuple[PendingWrite, Batch] | None = None
        next_snapshot = time.monotonic()  # publish right away: readers get a snapshot as soon as possible
        next_refresh = time.monotonic() + self.config.refresh_s
        next_progress = time.monotonic() + self.config.progress_s
        while True:
            self._beat()
            batch = self._collect(consumer, stop)
            # Converted to Arrow here, while the writer process still commits the previous batch.
            prepared = prepare(batch, self._by_name)
            if pending is not None:
                self._settle(consumer, pending)
                pending = None
            if batch.offsets:
                pending = (self.writer.submit(prepared), batch)
            now = time.monotonic()
            if stop.is_set() or now >= next_snapshot:
                if pending is not None:
                    self._settle(consumer, pending)
                    pending = None
                self.writer.publish()
                next_snapshot = time.monotonic() + self.config.snapshot_interval_s
                if stop.is_set():
                    log.info("sink stopped cleanly after %d batches, %d messages", self.batches, self.messages)
                    return
            if now >= next_refresh or not self._assigned:
                self._refresh(consumer)
                next_refresh = now + (self.config.refresh_s if self._down_since is None else _OUTAGE_RETRY_S)
            if now >= next_progress:
                log.info("sink: %d batches, %d messages committed so far", self.batches, self.messages)
                next_progress = now + self.config.progress_s

    def _settle(self, consumer: Any, pending: tuple[PendingWrite, Batch]) -> None:
        write, batch = pending
        write.result()  # raises what the writer raised: nothing after this batch is committed
        self.batches += 1
        self.messages += batch.messages
        self._stored.update({tp: nxt for tp, (_, nxt) in batch.offsets.items()})
        if self.config.lag_group is not None:
            offsets = {KafkaTP(t, p): OffsetAndMetadata(nxt, "", -1) for (t, p), (_, nxt) in batch.offsets.items()}
            try:
                consumer.commit_async(offsets, callback=_log_commit_failure)
            except KafkaError as error:  # lag monitoring only: DuckDB holds the offsets that count
                log.debug("lag-monitoring offset commit not sent: %r", error)

    def _collect(self, consumer: Any, stop: threading.Event) -> Batch:
        batch = Batch()
        size = self.config.batch_size
        deadline = time.monotonic() + self.config.batch_max_ms / 1000
        while not stop.is_set() and batch.messages < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if not self._assigned:  # the broker did not answer the first metadata request yet
                stop.wait(min(remaining, _POLL_SLICE_S))
                continue
            try:
                polled = consumer.poll(
                    timeout_ms=int(min(remaining, _POLL_SLICE_S) * 1000), max_records=size - batch.messages
                )
            except KafkaError as error:  # the broker went away (its group coordinator first): an outage
                self._outage(error, "Kafka poll failed")
                stop.wait(min(remaining, _POLL_SLICE_S))
                continue
            for tp, records in polled.items():
                if tp.topic == self.config.erasure_topic:
                    for record in records:
                        self._add_erasure(batch, record)
                    continue
                table = self._by_topic[tp.topic]
                for record in records:
                    self._add(batch, table, record)
        return batch

    def _add_erasure(self, batch: Batch, record: Any) -> None:
        topic, partition, offset = record.topic, record.partition, record.offset
        try:
            if record.key is None or record.value is None:
                raise ValueError("a suppression record needs a key and a value")
            batch.erasures.append(ErasureMessage.of(Suppression.decode(record.key, record.value), topic, partition,
                                                    offset))  # fmt: skip
        except (ValueError, KeyError, UnicodeDecodeError) as error:
            batch.rejects.append(Reject(topic, partition, offset, f"{type(error).__name__}: {error}", record.value))
        batch.add_offset(topic, partition, offset)

    def _add(self, batch: Batch, table: BoundTable, record: Any) -> None:
        topic, partition, offset, value = record.topic, record.partition, record.offset, record.value
        if value is None and table.name == "failed_events":
            pass  # erasure deleted this failed event (``privacy erase``); the sink deletes the row itself
        elif value is None:
            batch.rejects.append(Reject(topic, partition, offset, "null value (tombstone)", None))
        else:
            try:
                decoded = self.codec.decode(value, self._subjects[topic])
                row = table.to_row(decoded.record)
            except RegistryUnavailableError:
                raise
            except Exception as error:  # one record never stops the sink: it is kept as a reject
                batch.rejects.append(Reject(topic, partition, offset, f"{type(error).__name__}: {error}", value))
            else:
                batch.rows.append(SinkRow(table.name, topic, partition, offset, row))
        batch.add_offset(topic, partition, offset)

    def _outage(self, error: KafkaError, what: str) -> None:
        """A broker error: the outage starts now unless it already did; ``SinkInfraError`` past the budget."""
        if self._down_since is None:
            self._down_since = self._clock()
        self._within_budget(error, self._down_since, what)

    def _refresh(self, consumer: Any) -> None:
        """:meth:`_assign`, with broker errors retried (by the caller's next round) for ``retry_budget_s``."""
        try:
            self._assign(consumer)
        except KafkaError as error:
            self._outage(error, "Kafka metadata refresh failed")
        else:
            if self._down_since is not None:
                log.info("Kafka answers again after %.0fs", self._clock() - self._down_since)
            self._down_since = None
            self._report_lag(consumer)

    def _report_lag(self, consumer: Any) -> None:
        """Messages per table between what DuckDB stores and the end of the topic (0 for a table without a topic
        yet). Only a gauge: an error here waits for the next refresh."""
        try:
            ends = consumer.end_offsets(sorted(self._assigned)) if self._assigned else {}
            fresh = [tp for tp in ends if (tp.topic, tp.partition) not in self._stored]
            starts = consumer.beginning_offsets(fresh) if fresh else {}
        except KafkaError as error:
            log.debug("sink lag not measured this round: %r", error)
            return
        lag = dict.fromkeys((t.name for t in self.tables), 0)
        for tp, end in ends.items():
            stored = self._stored.get((tp.topic, tp.partition), starts.get(tp, 0))
            if tp.topic in self._by_topic:
                lag[self._by_topic[tp.topic].name] += max(0, end - stored)
        self._on_lag(lag)

    def _within_budget(self, error: KafkaError, since: float, what: str) -> None:
        """Log a broker error seen since ``since``; ``SinkInfraError`` once that is longer than the budget."""
        down = self._clock() - since
        if down > self.config.retry_budget_s:
            raise SinkInfraError(f"Kafka unavailable for {down:.0f}s ({error!r})") from error
        log.warning("%s (%r); retrying, %.0fs of %.0fs budget used", what, error, down, self.config.retry_budget_s)

    def _assign(self, consumer: Any) -> None:
        existing = consumer.topics()  # lists topics without auto-creating the missing ones
        wanted: set[KafkaTP] = set()
        erasure = [] if self.config.erasure_topic is None else [(self.config.erasure_topic, "erasures")]
        for topic, name in [*((t.topic, t.name) for t in self.tables), *erasure]:
            if topic not in existing:
                if topic not in self._missing_warned:
                    log.warning("topic %s (table %s) does not exist yet; will check again", topic, name)
                    self._missing_warned.add(topic)
                continue
            partitions = consumer.partitions_for_topic(topic) or set()
            wanted |= {KafkaTP(topic, p) for p in partitions}
        if wanted == self._assigned:
            return
        # assign() keeps the position of partitions that stay assigned; only new ones need a seek.
        consumer.assign(sorted(wanted))
        for tp in sorted(wanted - self._assigned):
            position = self._stored.get((tp.topic, tp.partition))
            if position is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, position)
        log.info("sink assigned %d partitions of %d topics", len(wanted), len({tp.topic for tp in wanted}))
        self._assigned = wanted


def _log_commit_failure(offsets: Any, response: Any) -> None:
    if isinstance(response, Exception):
        log.debug("lag-monitoring offset commit failed (harmless, DuckDB holds the real offsets): %s", response)
