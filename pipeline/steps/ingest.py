"""Ingest step: raw channel messages -> canonical CustomerEvents or typed failed events.

Guarantees, per batch: every input message yields exactly one outcome — a canonical event, a failed event,
a counted duplicate drop, or a counted ``suppressed`` drop (a valid event carrying an identifier of an erased
person, docs/privacy.md) — in input order. Data errors never raise; they become failed events that keep the
original bytes. Infrastructure errors (the schema registry unreachable) and a tripped invalid-share guard do
raise: the caller must then stop without acknowledging the batch.

Event time: each input partition is a *source* with a progress mark (the largest order time it produced,
:func:`~pipeline.domain.eventtime.place`). A valid event more than the allowed lateness behind its partition's
mark is a ``late_event`` (rule ``beyond_allowed_lateness``); any other gets its order time (its event time, or
the mark when it arrived after a later event). Both are functions of the partition's content up to the event,
so they are the same in every run, provided the caller restores each partition's mark as of the offset it
resumes from (:meth:`IngestStep.set_mark`; the worker keeps marks in the committed offsets' metadata).

Not guaranteed: dedup is exact only within the worker's bounded window and is lost on restart, so after a
crash the same event id can be published twice. Consumers of customer-events dedupe by ``event_id``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline import __version__
from pipeline.clock import Clock
from pipeline.domain.dedup import DedupWindow
from pipeline.domain.eventtime import NEVER, RANK_EVENT, Pos, place
from pipeline.domain.guard import InvalidRatioGuard, UpstreamBrokenError
from pipeline.domain.ingest import IngestPolicy, canonicalise, size_check
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.quarantine import Quarantine
from pipeline.domain.records import (
    CustomerEventRecord,
    FailureType,
    Rejection,
    SourceRef,
    failed_event_record,
    failed_key,
)
from pipeline.metrics import IngestMetrics
from schemas.codec import AvroCodec
from schemas.errors import CodecError, RegistryUnavailableError

log = logging.getLogger(__name__)

CANONICAL_SUBJECT = "customer-event"
FAILED_SUBJECT = "failed-event"

#: Identifier preference for the canonical event's key: the most person-specific one first.
KEY_FIELDS = (
    "customer_id",
    "loyalty_id",
    "email_hash",
    "phone_hash",
    "device_id",
    "social_handle",
    "anonymous_id",
)


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed input message."""

    key: bytes | None
    value: bytes | None  # None: a null record (a tombstone), rejected
    partition: int
    offset: int
    arrived_ms: int = 0  # when the worker received it (epoch ms; 0: unknown), for the partition's punctuality


@dataclass(slots=True)
class IngestOutput:
    """What one batch produces: (key, Avro value) pairs per output topic; ``records`` are the canonical events
    as records, index-aligned with ``canonical`` (identity resolution reads them without decoding again)."""

    canonical: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    records: list[CustomerEventRecord] = field(default_factory=list)
    positions: list[Pos] = field(default_factory=list)
    failed: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    duplicates: int = 0
    suppressed: int = 0
    #: per input partition of the batch: (offset to resume from after it, progress mark there)
    ends: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: per input partition of the batch: the largest delay between a valid event's time and its arrival
    delays: dict[int, int] = field(default_factory=dict)


def routing_key(record: Mapping[str, object]) -> bytes | None:
    """Key of a canonical event: its most person-specific identifier, prefixed with the identifier kind."""
    for name in KEY_FIELDS:
        value = record.get(name)
        if value:
            return f"{name}:{value}".encode()
    return None


class IngestStep:
    """Ingest for one channel topic. Holds the worker-local dedup window and invalid-share guard."""

    def __init__(
        self,
        channel: str,
        source_topic: str,
        codec: AvroCodec,
        policy: IngestPolicy,
        pseudonymiser: Pseudonymiser,
        quarantine: Quarantine,
        dedup: DedupWindow,
        guard: InvalidRatioGuard,
        metrics: IngestMetrics,
        clock: Clock,
        allowed_lateness_ms: int,
        erased: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self.channel = channel
        self._erased = erased
        self.source_topic = source_topic
        self._codec = codec
        self._policy = policy
        self._pseudonymiser = pseudonymiser
        self._seal = quarantine.seal
        self._fingerprint = quarantine.fingerprint
        self._dedup = dedup
        self._guard = guard
        self._metrics = metrics
        self._clock = clock
        self._lateness = allowed_lateness_ms
        self.marks: dict[int, int] = {}  # input partition -> progress mark
        self._expected = frozenset({channel})
        self._processor = f"ingest/{__version__}"
        self._in = metrics.events_in.get(channel)
        self._dup = metrics.duplicates.get(channel)
        self._suppressed = metrics.suppressed.get(channel)
        self._lag = metrics.event_lag.get(channel)
        self._ratio = metrics.invalid_ratio.get(channel)

    def rebalanced(self) -> None:
        """Every partition resumes at its committed offset: ids recorded past it must not count as duplicates."""
        self._dedup.clear()

    def set_mark(self, partition: int, mark: int) -> None:
        """Restore a partition's progress mark as of the offset the next batch starts at."""
        self.marks[partition] = mark

    def replay_marks(self, partition: int, mark: int, messages: Sequence[RawMessage]) -> int:
        """The partition's mark after ``messages`` (the ones between a known mark and where the next batch
        starts), without producing anything; also made the partition's current mark."""
        now_ms = self._clock.now_ms()
        for msg in messages:
            outcome = self._one(msg, now_ms)
            if not isinstance(outcome, Rejection) and (placed := place(mark, outcome["event_time"], self._lateness)):
                mark = max(mark, placed)
        self.marks[partition] = mark
        return mark

    def process_batch(self, messages: Sequence[RawMessage]) -> IngestOutput:
        """Process a batch. Raises ``UpstreamBrokenError`` (guard) or infrastructure errors (module doc)."""
        out = IngestOutput()
        now_ms = self._clock.now_ms()
        self._in.inc(len(messages))  # counters per batch, not per event: label lookups and locks add up
        by_type: Counter[str] = Counter()
        marks = self.marks  # read after each message: the partition's mark for the batch's end
        for msg in messages:
            try:
                self._message(msg, now_ms, out, by_type)
            except (UpstreamBrokenError, RegistryUnavailableError):
                raise
            except Exception as exc:  # one record must not stall its partition: it becomes a failed event
                log.warning("unexpected error on %s[%d]@%d: %r", self.source_topic, msg.partition, msg.offset, exc)
                self._reject(Rejection(FailureType.PROCESSING_ERROR, "unexpected_exception", repr(exc)), msg, now_ms,
                             out)  # fmt: skip
            out.ends[msg.partition] = (msg.offset + 1, marks.get(msg.partition, NEVER))
        for event_type, n in by_type.items():
            self._metrics.events_out.get(self.channel, event_type).inc(n)
        self._ratio.set(self._guard.ratio)
        return out

    def _message(self, msg: RawMessage, now_ms: int, out: IngestOutput, by_type: Counter[str]) -> None:
        outcome = self._one(msg, now_ms)
        mark = self.marks.get(msg.partition, NEVER)
        placed = None if isinstance(outcome, Rejection) else place(mark, outcome["event_time"], self._lateness)
        if not isinstance(outcome, Rejection) and self._erased is not None and self._erased(outcome):
            # An erased person's event: counted, nothing of it kept -- not even as a late failed event
            # (docs/privacy.md). It moves the mark as any valid event would, so watermarks do not depend on it.
            self._guard.record(True)
            self._suppressed.inc()
            out.suppressed += 1
            if placed is not None:
                self.marks[msg.partition] = max(mark, placed)
            return
        if not isinstance(outcome, Rejection) and placed is None:
            outcome = self._too_late(outcome, mark)
        if isinstance(outcome, Rejection):
            self._reject(outcome, msg, now_ms, out)
            return
        assert placed is not None
        encoded = self._codec.encode(CANONICAL_SUBJECT, outcome)  # before any state changes: it may raise
        self.marks[msg.partition] = max(mark, placed)
        order = placed
        if msg.arrived_ms:
            delay = msg.arrived_ms - outcome["event_time"]
            if delay > out.delays.get(msg.partition, NEVER):
                out.delays[msg.partition] = delay
        self._guard.record(True)
        if self._dedup.seen(outcome["event_id"]):
            self._dup.inc()
            out.duplicates += 1
            return
        by_type[outcome["event_type"]] += 1
        self._lag.observe(max(0.0, (now_ms - outcome["event_time"]) / 1000.0))
        out.canonical.append((routing_key(outcome), encoded))
        out.records.append(outcome)
        out.positions.append(Pos(order, outcome["event_time"], RANK_EVENT, outcome["event_id"]))

    def _reject(self, rejection: Rejection, msg: RawMessage, now_ms: int, out: IngestOutput) -> None:
        self._guard.record(False)
        self._metrics.failed.get(self.channel, str(rejection.failure_type)).inc()
        # Never the input key: producers key by raw identifiers (e-mail), which must not leave ingest.
        out.failed.append((failed_key(self.source_topic, msg.partition, msg.offset),
                           self._encode_failure(rejection, msg, now_ms)))  # fmt: skip

    def _one(self, msg: RawMessage, now_ms: int) -> CustomerEventRecord | Rejection:
        value = msg.value
        rejected = size_check(value, self._policy)
        if rejected is not None:
            return rejected
        assert value is not None  # size_check rejects a null value
        schema_id: int | None = None
        try:
            decoded = self._codec.decode(value, self._expected)
            schema_id = decoded.schema_id
            source = SourceRef(self.source_topic, msg.partition, msg.offset, schema_id)
            result = canonicalise(self.channel, decoded.record, source, now_ms, self._policy, self._pseudonymiser)
        except CodecError as exc:
            return Rejection(FailureType(exc.failure_type), exc.rule, str(exc), schema_id=exc.schema_id or schema_id)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # A record that decodes but trips an assumption in our code is still data, not an outage:
            # keep it as a failed event instead of crashing the worker on every restart.
            log.warning("unexpected error on %s[%d]@%d: %r", self.source_topic, msg.partition, msg.offset, exc)
            return Rejection(FailureType.PROCESSING_ERROR, "unexpected_exception", repr(exc), schema_id=schema_id)
        return result

    def _too_late(self, event: CustomerEventRecord, mark: int) -> Rejection:
        behind = mark - event["event_time"]
        reason = (f"event_time {event['event_time']} is {behind} ms behind its partition's progress {mark}; "
                  f"allowed lateness {self._lateness} ms")  # fmt: skip
        return Rejection(FailureType.LATE_EVENT, "beyond_allowed_lateness", reason, event["event_id"],
                         event["schema_id"])  # fmt: skip

    def _encode_failure(self, rejection: Rejection, msg: RawMessage, now_ms: int) -> bytes:
        record = failed_event_record(
            rejection,
            self.source_topic,
            msg.partition,
            msg.offset,
            msg.key,
            msg.value,
            self._processor,
            now_ms,
            seal=self._seal,
            keep_max_bytes=self._policy.failed_original_max_bytes,
            fingerprint=self._fingerprint,
        )
        return self._codec.encode(FAILED_SUBJECT, record)
