"""Journey step: one journey partition's runtime between batches, and the processing of one batch.

Input: bundles on resolved-events (canonical events and identity controls with their positions, and progress
marks of every source: the channel partitions after ingest, and the identity writer), and ``transfer`` controls
from other journey partitions. The partition's watermark is the minimum progress of its expected sources
(:class:`~pipeline.domain.eventtime.Sources`); each customer applies what lies below it in event-time order
(:class:`~pipeline.steps.journey_customer.CustomerMachine`).

Guarantees per batch: each customer record is loaded and returned at most once; outputs of one customer are a
function of its items and the watermarks, never of arrival order or batching. What is pending (items not yet applied,
transfers not yet folded) lives in memory only: the partition state names the oldest resolved-events offset
that still holds any, so a worker taking the partition over re-reads them (:meth:`JourneyStep.restore`).
Not guaranteed: exactly-once; a replayed batch re-emits outputs with the same ids and versions.
"""

from __future__ import annotations

import bisect
import heapq
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pipeline import __version__
from pipeline.clock import Clock, SystemClock
from pipeline.domain.eventtime import NEVER, RANK_CONTROL, RANK_EVENT, Pos, Sources
from pipeline.domain.records import CustomerEventRecord, FailureType, Rejection, failed_event_record, failed_key
from pipeline.domain.sessions_summary import SessionPolicy, SessionVersion
from pipeline.metrics import JourneyMetrics
from pipeline.steps.bundles import Entry, read
from pipeline.steps.due_index import DueIndex
from pipeline.steps.journey_customer import Advance, CustomerMachine, CustomerState, Item
from pipeline.steps.journey_signals import JourneySignals, SignalsOutput
from schemas.codec import AvroCodec

log = logging.getLogger(__name__)
ANY_SOURCE = "*"  # in a resumed message of a state written before sources were recorded: every source

KeyValue = tuple[bytes | None, bytes]
WRITER = "writer"
#: Customers per slice of :meth:`JourneyStep.slices` (a day crossing costs about 0.1 ms per customer).
SLICE = 150
TAKE_PER_CUSTOMER = 16  # due keys taken per slice, per customer of a slice (taking one costs far less)


def input_source(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def control_pos(control: dict[str, Any]) -> Pos:
    """Position of an identity control: the link's, ordered before events of the same instant, one per profile."""
    return Pos(control["order_time"], control["event_time"], RANK_CONTROL, f"{control['event_id']}/{control['old_id']}")


@dataclass(slots=True)
class JourneyOutput:
    """Records to persist and messages to publish for one batch of one partition."""

    states: dict[bytes, tuple[bytes, int | None]] = field(default_factory=dict)  # key -> (record, next due)
    partition_state: bytes = b""
    sessions: list[KeyValue] = field(default_factory=list)
    failed: list[KeyValue] = field(default_factory=list)
    journey: SignalsOutput = field(default_factory=SignalsOutput)
    entries: list[Entry] = field(default_factory=list)  # transfers and forwards, keyed by the customer addressed
    watermark: int = NEVER
    erased: list[bytes] = field(default_factory=list)  # customers whose records are deleted (tombstones)

    def _lists(self) -> tuple[list[Any], ...]:
        j = self.journey
        return self.sessions, self.failed, self.entries, j.transitions, j.signals, j.profiles, j.order_lines

    def mark(self) -> tuple[int, ...]:
        """Where the outputs stand, for :meth:`rewind`."""
        return tuple(len(items) for items in self._lists())

    def rewind(self, mark: tuple[int, ...], key: bytes) -> None:
        """Drop what was added since ``mark`` and the new record of ``key``: a customer that failed half-way."""
        for items, size in zip(self._lists(), mark, strict=True):
            del items[size:]
        self.states.pop(key, None)


class Tally(NamedTuple):
    """Customer records, their bytes, open session pieces and customers at churn risk."""

    customers: int
    state_bytes: int
    open_sessions: int
    at_risk: int

    @staticmethod
    def of(state: CustomerState, size: int) -> Tally:
        sessions = state.sessions.open_pieces() if state.sessions is not None else 0
        risk = state.profile is not None and state.profile.churn_risk
        return Tally(1 if size else 0, size, sessions, 1 if risk else 0)

    def moved(self, before: Tally, after: Tally) -> Tally:
        return Tally(*(t - b + a for t, b, a in zip(self, before, after, strict=True)))


@dataclass(slots=True)
class JourneyPartition:
    """What one journey partition holds in memory: sources, pending items and transfers, due-time indexes."""

    partition: int
    sources: Sources
    pending: dict[bytes, list[Item]] = field(default_factory=dict)
    transfers: dict[bytes, dict[tuple[str, Pos], tuple[str, int]]] = field(default_factory=dict)
    heads: list[tuple[int, bytes]] = field(default_factory=list)
    due: DueIndex = field(default_factory=DueIndex)
    held: Counter[int] = field(default_factory=Counter)  # resolved-events offset -> items and transfers held
    # offset of a message that reported a source active again after it was idle -> {source: its idle mark}
    resumed: dict[int, dict[str, int]] = field(default_factory=dict)
    # Totals over the partition's customer records, kept by difference and persisted with them (gauges).
    tally: Tally = field(default_factory=lambda: Tally(0, 0, 0, 0))
    erasing: list[bytes] = field(default_factory=list)  # erased by controls of the batch being taken in

    def encode(self) -> bytes:
        held = [o for o, n in self.held.items() if n > 0]
        self.resumed = {o: marks for o, marks in self.resumed.items() if self.held[o] > 0}
        doc = {"s": self.sources.to_dict(), "m": min(held) if held else None,
               "r": [[o, marks] for o, marks in sorted(self.resumed.items())], "t": list(self.tally)}  # fmt: skip
        return json.dumps(doc, separators=(",", ":")).encode()

    @staticmethod
    def min_pending(raw: bytes | None) -> int | None:
        """The oldest resolved-events offset the partition state says still holds pending items."""
        return json.loads(raw)["m"] if raw else None


class JourneyStep:
    """Runs journey partitions (see the module docstring)."""

    def __init__(
        self,
        codec: AvroCodec,
        policy: SessionPolicy,
        metrics: JourneyMetrics,
        seal: Callable[[bytes], str],
        source_topic: str,
        expected_sources: Iterable[str],
        signals: JourneySignals | None = None,
        clock: Clock | None = None,
        erased: Callable[[str], bool] | None = None,
    ) -> None:
        self._codec = codec
        self._erased = erased
        self._clock = clock or SystemClock()
        self._metrics = metrics
        self._seal = seal
        self._failed_key = source_topic.encode()
        self._expected = frozenset(expected_sources)
        self._machine = CustomerMachine(policy, signals, self._decode_event)
        self.partitions: dict[int, JourneyPartition] = {}

    def _decode_event(self, value: bytes) -> CustomerEventRecord:
        record: Any = self._codec.decode(value).record
        return record  # type: ignore[no-any-return]

    def restore(
        self, partition: int, state: bytes | None, due: Iterable[tuple[bytes, int | None]],
        pending: Iterable[tuple[int, bytes, bytes]],
    ) -> JourneyPartition:  # fmt: skip
        """Rebuild a partition's runtime after it was (re)assigned: its persisted state, the due times of its
        customers, and the resolved-events messages from the state's oldest pending offset up to the committed
        one (their progress marks are already in the state; items a customer applied before are skipped when
        they come up)."""
        doc = json.loads(state) if state else {}
        part = JourneyPartition(partition, Sources.from_dict(self._expected, doc.get("s")))
        # An older state lists offsets only: everything in those messages counts as resumed, as it did then.
        part.resumed = {r: {ANY_SOURCE: NEVER} for r in doc.get("r", ()) if isinstance(r, int)}
        part.resumed.update({r[0]: r[1] for r in doc.get("r", ()) if isinstance(r, list)})
        part.tally = Tally(*doc.get("t", (0, 0, 0, 0)))
        for key, when in due:
            part.due.set(key, when)
        for offset, key, value in pending:
            for entry in read(self._codec, key, value)[0]:
                self._take(part, entry, offset)
        self.partitions[partition] = part
        return part

    def process(
        self, partition: int, messages: Sequence[tuple[int, bytes, bytes]], load: Callable[[bytes], bytes | None]
    ) -> JourneyOutput:
        """One batch of (offset, key, value) of ``partition``; ``load(key)`` gives a customer's record."""
        out = JourneyOutput()
        for _ in self.slices(partition, messages, load, out):
            pass
        return out

    def slices(
        self, partition: int, messages: Sequence[tuple[int, bytes, bytes]], load: Callable[[bytes], bytes | None],
        out: JourneyOutput, size: int = SLICE, max_due: int | None = None,
    ) -> Iterator[None]:  # fmt: skip
        """:meth:`process` into ``out`` in bounded steps: pauses after every ``size`` customers (and every
        ``TAKE_PER_CUSTOMER * size`` due customers taken), so that a caller on the event loop can give other tasks a
        turn. ``max_due``: at most that many customers run for their timers alone (customers with items below the
        watermark always run); the others stay due, for :meth:`due_left` and the next call, which may come with
        no messages. A watermark crossing midnight makes every scored customer due (the daily re-score): without
        ``max_due`` they all run in this call, and its outputs are all held at once. ``out`` is complete, and the
        same as :meth:`process` gives, once the iterator is exhausted; nothing else may use the partition in
        between."""
        part = self.partitions.get(partition) or self.restore(partition, None, (), ())
        for offset, key, value in messages:
            entries, marks = read(self._codec, key, value)
            # Its items of those sources may lie behind the watermark (docs/time.md, idle sources).
            resuming = {m.source: part.sources.mark_of(m.source) for m in marks
                        if not m.idle and part.sources.idle(m.source)}  # fmt: skip
            if resuming:
                part.resumed[offset] = {**part.resumed.get(offset, {}), **resuming}
            for mark in marks:
                part.sources.update(mark.source, mark.mark, mark.idle)
            for entry in entries:
                self._take(part, entry, offset)
        for key in part.erasing:
            raw = load(key)
            part.tally = part.tally.moved(Tally.of(CustomerState.decode(raw), len(raw or b"")), Tally(0, 0, 0, 0))
            out.erased.append(key)
        part.erasing.clear()
        base = out.watermark = part.sources.watermark()
        # Every customer to run is taken before any runs (a blocked customer pushes its head back below
        # ``base``); the keys are sorted in runs and merged, so no single step sorts them all.
        runs: list[list[bytes]] = []
        chunk = TAKE_PER_CUSTOMER * size
        run: list[bytes] = []
        while part.heads and part.heads[0][0] < base:
            run.append(heapq.heappop(part.heads)[1])
            if len(run) >= chunk:
                runs.append(sorted(run))
                run = []
                yield None
        runs.append(sorted(run))
        left = max_due if max_due is not None else len(part.due)
        while left > 0 and (taken := part.due.take(base, min(chunk, left))):
            runs.append(sorted(taken))
            left -= len(taken)
            if len(taken) == chunk:
                yield None
        erased, last, done = set(out.erased), None, 0
        for key in heapq.merge(*runs):
            if key == last or key in erased:
                continue
            last = key
            before = out.mark()
            try:
                self._customer(part, key, load, base, out)
            except Exception as exc:  # a bug or a record no rule foresaw: keep its items, go on with the others
                out.rewind(before, key)
                self._broken(part, key, base, exc, out)
            done += 1
            if done % size == 0:
                yield None
        out.partition_state = part.encode()

    def due_left(self, partition: int) -> bool:
        """Whether customers of ``partition`` are due below its watermark and did not run (``max_due``)."""
        part = self.partitions.get(partition)
        return part is not None and part.due.any_before(part.sources.watermark())

    # --- intake ------------------------------------------------------------------------------------------------

    def _take(self, part: JourneyPartition, entry: Entry, offset: int) -> None:
        if self._codec.subject_of(entry.value) == "journey-control":
            control = dict(self._codec.decode(entry.value).record)
            if control["kind"] == "merge":  # v1 name
                control["kind"] = "absorbed"
            if control["kind"] == "erase":
                self._erase(part, entry.key)
                return
            pos = control_pos(control)
            if control["kind"] == "transfer":
                part.transfers.setdefault(entry.key, {})[(control["old_id"], pos)] = (control["state_json"], offset)
                part.held[offset] += 1
                heapq.heappush(part.heads, (pos.order_time, entry.key))
                return
            item = Item(pos, entry.value, offset, control)
        elif self._erased is not None and self._erased(entry.key.decode()):
            self._metrics.suppressed.inc()  # an erased person's event still in flight: nothing of it is kept
            return
        elif entry.order_time:
            pos = Pos(entry.order_time, entry.event_time, RANK_EVENT, entry.event_id)
            item = Item(pos, entry.value, offset, resumed=self._straggler(part, offset, entry.value, pos))
        else:  # a single canonical event without a position: its own event time
            record = self._decode_event(entry.value)
            t = record["event_time"]
            pos = Pos(t, t, RANK_EVENT, record["event_id"])
            item = Item(pos, entry.value, offset, resumed=self._straggler(part, offset, entry.value, pos))
        items = part.pending.setdefault(entry.key, [])
        at = bisect.bisect_left(items, item.pos, key=lambda it: it.pos)
        if at < len(items) and items[at].pos == item.pos:
            return  # the same item again (published twice upstream): one copy is enough
        items.insert(at, item)
        part.held[offset] += 1
        if items[0] is item:
            heapq.heappush(part.heads, (item.pos.order_time, entry.key))

    def _erase(self, part: JourneyPartition, key: bytes) -> None:
        """An ``erase`` control (``omnistream privacy erase``): the customer's items, transfers and timer go now,
        and its record is deleted by this batch (it takes effect on arrival, not in event time: it is an order,
        not an event of the customer)."""
        for it in part.pending.pop(key, []):
            part.held[it.offset] -= 1
        for _state, offset in part.transfers.pop(key, {}).values():
            part.held[offset] -= 1
        part.due.set(key, None)
        part.erasing.append(key)
        self._metrics.erased.inc()

    def _straggler(self, part: JourneyPartition, offset: int, value: bytes, pos: Pos) -> bool:
        """Whether an event may be applied behind its customer's clock: it came from a source that had been
        idle, and lies at or after the mark the source had then. Below that mark it is a replay of an event
        read before (a partition re-read from its committed offset after a rebalance), applied already."""
        idle_marks = part.resumed.get(offset)
        if not idle_marks:
            return False
        if ANY_SOURCE in idle_marks:
            return True
        event = self._decode_event(value)
        mark = idle_marks.get(input_source(event["source_topic"], event["source_partition"]))
        return mark is not None and pos.order_time >= mark

    # --- one customer ------------------------------------------------------------------------------------------

    def _customer(
        self, part: JourneyPartition, key: bytes, load: Callable[[bytes], bytes | None], base: int, out: JourneyOutput
    ) -> None:
        raw = load(key)
        state = CustomerState.decode(raw)
        before = Tally.of(state, len(raw or b""))
        items = part.pending.get(key, [])
        mine = part.transfers.get(key, {})

        def transfer(old_id: str, pos: Pos) -> str | None:
            found = mine.get((old_id, pos))
            return None if found is None else found[0]

        adv = self._machine.advance(key.decode(), state, items, base, transfer, out.journey)
        for it in items[: adv.applied]:
            part.held[it.offset] -= 1
        rest = items[adv.applied :]
        if rest:
            part.pending[key] = rest
            heapq.heappush(part.heads, (rest[0].pos.order_time, key))
        else:
            part.pending.pop(key, None)
        for ident in [k for k in mine if k[1] <= state.pos]:  # folded, or a replay of one folded before
            part.held[mine.pop(ident)[1]] -= 1
        if mine:
            heapq.heappush(part.heads, (min(p.order_time for _, p in mine), key))
        else:
            part.transfers.pop(key, None)
        self._emit(key, state, adv, out)
        if adv.changed:
            due = self._machine.next_due(state)
            body = state.encode()
            out.states[key] = (body, due)
            part.due.set(key, due)
            part.tally = part.tally.moved(before, Tally.of(state, len(body)))

    def _emit(self, key: bytes, state: CustomerState, adv: Advance, out: JourneyOutput) -> None:
        m = self._metrics
        self._sessions(adv.sessions, out)
        for target, it in adv.forwards:
            out.entries.append(Entry(target.encode(), it.value, it.pos.order_time, it.pos.event_time, it.pos.event_id))
            m.forwarded.inc()
        for target, record in adv.transfers:
            value = self._codec.encode("journey-control", record)
            pos = control_pos(record)
            out.entries.append(Entry(target.encode(), value, pos.order_time, pos.event_time, pos.event_id))
            m.transfers.inc()
        for it, event, reason in adv.late:
            self._late(key, it, event, reason, out)
        if adv.events:
            m.events.inc(adv.events)
        if adv.behind:
            m.behind.inc(adv.behind)

    def _sessions(self, versions: Sequence[SessionVersion], out: JourneyOutput) -> None:
        # Only the last version of a session within one advance is published: the warehouse keeps the latest
        # (highest version) of each, and the versions in between are superseded before anyone could read them.
        for v in {v.session_id: v for v in versions}.values():
            out.sessions.append((v.session_id.encode(), self._codec.encode("session", v.to_record())))
            self._metrics.session_versions.get(v.status).inc()
            if v.status == "closed":
                self._metrics.session_duration.observe(v.duration_s)

    def _late(self, key: bytes, it: Item, event: CustomerEventRecord, reason: str, out: JourneyOutput) -> None:
        rejection = Rejection(FailureType.LATE_EVENT, "behind_customer_clock", reason, event_id=event["event_id"])
        # The event's own input coordinates: the warehouse keeps one failed row per (topic, partition, offset).
        self._reject(rejection, (event["source_topic"], event["source_partition"], event["source_offset"]), key,
                     it.value, out)  # fmt: skip
        self._metrics.late.inc()

    def _reject(
        self, rejection: Rejection, at: tuple[str, int, int], key: bytes, value: bytes, out: JourneyOutput
    ) -> None:
        record = failed_event_record(rejection, *at, key, value, f"journey/{__version__}", self._clock.now_ms(),
                                     seal=self._seal)  # fmt: skip
        out.failed.append((failed_key(*at), self._codec.encode("failed-event", record)))

    def _broken(self, part: JourneyPartition, key: bytes, base: int, exc: Exception, out: JourneyOutput) -> None:
        """The customer's items due at ``base`` become ``processing_error`` failed events (controls are logged);
        the customer keeps its record as before them, and its later items are applied as they come."""
        log.exception("journey: customer %r failed at watermark %d; its due items are kept as failed events", key, base)
        items = part.pending.get(key, [])
        due = [it for it in items if it.pos.order_time < base]
        rest = items[len(due) :]
        for it in due:
            part.held[it.offset] -= 1
            if it.control is not None:
                continue
            try:
                event = self._decode_event(it.value)
                at = (event["source_topic"], event["source_partition"], event["source_offset"])
            except Exception:  # the event itself does not decode: name it by its resolved-events message
                at = (self._failed_key.decode(), part.partition, it.offset)
            rejection = Rejection(FailureType.PROCESSING_ERROR, "unexpected_exception", repr(exc)[:1000],
                                  event_id=it.pos.event_id)  # fmt: skip
            self._reject(rejection, at, key, it.value, out)
            self._metrics.processing_errors.inc()
        if rest:
            part.pending[key] = rest
            heapq.heappush(part.heads, (rest[0].pos.order_time, key))
        else:
            part.pending.pop(key, None)
        mine = part.transfers.get(key, {})
        for ident in [k for k in mine if k[1].order_time < base]:
            part.held[mine.pop(ident)[1]] -= 1
        if not mine:
            part.transfers.pop(key, None)
