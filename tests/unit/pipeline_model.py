"""An in-memory model of the pipeline's event-time path, driven by a random scheduler (no Kafka, no Faust).

It runs the real steps -- order times (:func:`place`), the identity router and writer, the assignment replica,
the journey partitions -- over queues that stand in for the topics, in an order a seeded RNG picks: any source may
run ahead, any stage may lag, batches have random sizes, and a journey partition may crash (its in-memory runtime
is lost, its table rolls back to the records tagged at or below its committed offset, and the messages after
that offset are delivered again). What it must produce is the same warehouse rows whatever the seed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka.partitioner.default import murmur2
from prometheus_client import CollectorRegistry

from agents.state_table import catch_up_from, pack, unpack
from pipeline.domain.eventtime import NEVER, RANK_EVENT, Pos, place
from pipeline.domain.identity_rules import DEFAULT_POLICY
from pipeline.domain.ingest import IngestPolicy, canonicalise
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.records import CustomerEventRecord, Rejection, SourceRef
from pipeline.evaluate.reference import Reference, ReferenceConfig
from pipeline.identity.replica import AssignmentReplica
from pipeline.metrics import identity_metrics, journey_metrics
from pipeline.metrics_journey import journey_signal_metrics
from pipeline.simulate.config import SimConfig
from pipeline.simulate.simulation import Simulation
from pipeline.steps.bundles import Mark, bundle
from pipeline.steps.held import Held, HeldBatches
from pipeline.steps.identity import IdentityRouter, IdentityWriter
from pipeline.steps.journey import WRITER, JourneyPartition, JourneyStep, input_source
from pipeline.steps.journey_signals import JourneySignals
from schemas.codec import AvroCodec

DAY = 86_400_000


def partition_of(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def simulated_events(config: SimConfig, partitions: int) -> list[CustomerEventRecord]:
    """Canonical events of a simulation as ingest would emit them (late deliveries and duplicates included),
    with their input coordinates: partition by the message key, offsets in delivery order."""
    from schemas.registry import FileSchemaRegistry

    codec = AvroCodec(FileSchemaRegistry())
    policy = IngestPolicy(300_000, 400 * DAY, 65536)
    pseudo = Pseudonymiser(b"model")
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    out: list[CustomerEventRecord] = []
    for msg in Simulation(config).messages():
        partition = partition_of(msg.key or b"", partitions)
        offset = offsets[msg.channel, partition]
        offsets[msg.channel, partition] += 1
        if msg.record is None or msg.subject != msg.channel:
            continue
        decoded = codec.decode(codec.encode(msg.subject, msg.record, msg.version))
        canon = canonicalise(msg.channel, dict(decoded.record), SourceRef(msg.channel, partition, offset,
                                                                          decoded.schema_id), config.end_ms,
                             policy, pseudo)  # fmt: skip
        if not isinstance(canon, Rejection):
            out.append(canon)
    return out


@dataclass
class Topic:
    """An append-only partitioned log; consumers keep their own positions."""

    partitions: int
    logs: list[list[tuple[bytes, bytes]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.logs = [[] for _ in range(self.partitions)]

    def append(self, messages: Iterable[tuple[bytes, bytes]]) -> None:
        for key, value in messages:
            self.logs[partition_of(key, self.partitions) if self.partitions > 1 else 0].append((key, value))


class Model:
    """The pipeline over in-memory topics, driven by ``rng`` (see the module docstring)."""

    def __init__(
        self, events: list[CustomerEventRecord], config: ReferenceConfig, codec: AvroCodec, partitions: int,
        lateness_ms: int, rng: random.Random, crash_rate: float = 0.0, duplicate_rate: float = 0.0,
        stale_rate: float = 0.0,
    ) -> None:  # fmt: skip
        self.rng = rng
        self.duplicate_rate = duplicate_rate
        self.again: list[tuple[Topic, list[tuple[bytes, bytes]]]] = []
        self.codec = codec
        self.partitions = partitions
        self.lateness = lateness_ms
        self.crash_rate = crash_rate
        self.stale_rate = stale_rate  # share of crashes whose state is recovered as of an older commit
        # Sources: each input partition's events in offset order (duplicates included, as produced).
        self.sources: dict[str, list[CustomerEventRecord]] = defaultdict(list)
        for e in sorted(events, key=lambda r: (r["source_topic"], r["source_partition"], r["source_offset"])):
            self.sources[input_source(e["source_topic"], e["source_partition"])].append(e)
        self.cursor = dict.fromkeys(self.sources, 0)
        self.marks = dict.fromkeys(self.sources, NEVER)
        self.held: dict[str, HeldBatches] = defaultdict(HeldBatches)
        self.idle: set[str] = set()
        self.idle_links: set[str] = set()
        self.registry = CollectorRegistry()
        self.replica = AssignmentReplica("unused:0", "unused")
        self.router = IdentityRouter(self.replica, identity_metrics(self.registry))
        self.writer = IdentityWriter(codec, config.identity, identity_metrics(CollectorRegistry()), self.sources,
                                     lambda b: "sealed")  # fmt: skip
        self.links = Topic(1)
        self.assignments: list[tuple[bytes, bytes]] = []
        self.replica_pos = 0
        self.writer_pos = 0
        self.resolved = Topic(partitions)
        self.outputs: dict[str, list[tuple[bytes, bytes]]] = defaultdict(list)
        signals = JourneySignals(config.signals, codec, journey_signal_metrics(CollectorRegistry()))
        self.step = JourneyStep(codec, config.session, journey_metrics(CollectorRegistry()), lambda b: "sealed",
                                "resolved-events", [*self.sources, WRITER], signals)  # fmt: skip
        self.tables: list[dict[bytes, bytes]] = [{} for _ in range(partitions)]
        self.history: list[list[tuple[bytes, bytes]]] = [[] for _ in range(partitions)]  # the changelogs
        self.accepted: list[CustomerEventRecord] = []  # what ingest published to customer-events
        self.dedup: set[str] = set()
        self.position = [0] * partitions  # next offset each journey partition consumes
        self.committed = [0] * partitions
        self.commits: list[list[int]] = [[0] for _ in range(partitions)]
        self.crashes = 0
        self.caught_up = 0

    def _publish(self, topic: Topic, messages: list[tuple[bytes, bytes]]) -> None:
        """Append to a topic; sometimes publish an earlier batch again (an at-least-once producer after a crash)."""
        topic.append(messages)
        if self.again and self.rng.random() < 0.5:
            self._again()
        if messages and self.rng.random() < self.duplicate_rate:
            self.again.append((topic, list(messages)))

    def _again(self) -> None:
        """Publish a copy owed; its marks make a source active again, which declares itself idle again later."""
        other, old = self.again.pop(0)
        other.append(old)
        self.idle.clear()
        self.idle_links.clear()

    # --- actors -------------------------------------------------------------------------------------------------

    def ingest(self, source: str) -> bool:
        events = self.sources[source]
        start = self.cursor[source]
        if start >= len(events):  # consumed to the end: idle (towards the journey once nothing is held)
            mark = [Mark(source, self.marks[source], idle=True)]
            if source not in self.idle_links:
                self.idle_links.add(source)
                self._publish(self.links, bundle(self.codec, (), lambda _k: 0, 1, mark))
                return True
            if source not in self.idle and not self.held[source]:
                self.idle.add(source)
                self._publish(self.resolved, bundle(self.codec, (), lambda k: partition_of(k, self.partitions),
                                            self.partitions, mark))  # fmt: skip
                return True
            return False
        batch = events[start : start + self.rng.randint(1, 40)]
        self.cursor[source] += len(batch)
        records, positions = [], []
        if self.rng.random() < self.crash_rate:
            self.dedup.clear()  # a restarted worker's dedup window starts empty
        for e in batch:
            order = place(self.marks[source], e["event_time"], self.lateness)
            if order is None:
                continue  # a late_event: not part of the stream
            self.marks[source] = max(self.marks[source], order)
            if e["event_id"] in self.dedup:
                continue
            self.dedup.add(e["event_id"])
            self.accepted.append(e)
            records.append(e)
            positions.append(Pos(order, e["event_time"], RANK_EVENT, e["event_id"]))
        values = [self.codec.encode("customer-event", r) for r in records]
        split = self.router.split(records, values, positions)
        self._publish(self.links, bundle(self.codec, split.links, lambda _k: 0, 1, [Mark(source, self.marks[source])]))
        self.held[source].append(Held([], split.records, split.values, split.positions, {0: (0, 0)}, 1))
        self._route(source)
        return True

    def _route(self, source: str) -> bool:
        """The worker's routing pass (agents/ingest.py): every held event below the watermark, with the promise
        that allows (pipeline/steps/held.py)."""
        held, watermark = self.held[source], self.replica.watermark
        out = held.route(watermark)
        promised = held.marks(watermark, {0: self.marks[source]}, every=bool(out.positions))
        if not out.positions and not promised:
            return False
        entries = self.router.route(out.records, out.values, out.positions)
        marks = [Mark(source, promised[0])] if promised else []
        self._publish(self.resolved, bundle(self.codec, entries, lambda k: partition_of(k, self.partitions),
                                            self.partitions, marks))  # fmt: skip
        return True

    def write(self) -> bool:
        log = self.links.logs[0]
        if self.writer_pos >= len(log):
            return False
        n = self.rng.randint(1, 10)
        batch = [(o, k, v) for o, (k, v) in enumerate(log[self.writer_pos : self.writer_pos + n], self.writer_pos)]
        self.writer_pos += len(batch)
        out = self.writer.process_batch(batch)
        self.assignments.extend(out.assignments)
        self.outputs["merges"].extend((k, v) for k, v in out.merges)
        self.outputs["failed"].extend((k, v) for k, v in out.failed)
        if out.resolved or out.marks:
            self._publish(self.resolved, bundle(self.codec, out.resolved, lambda k: partition_of(k, self.partitions),
                                        self.partitions, out.marks))  # fmt: skip
        return True

    def replicate(self) -> bool:
        if self.replica_pos >= len(self.assignments):
            return False
        upto = self.rng.randint(self.replica_pos + 1, len(self.assignments))
        for key, value in self.assignments[self.replica_pos : upto]:
            self.replica.apply(key, value)
        self.replica_pos = upto
        return True

    def journey(self, p: int) -> bool:
        log = self.resolved.logs[p]
        start = self.position[p]
        if start >= len(log):
            return False
        again: list[tuple[int, bytes, bytes]] = []
        if p not in self.step.partitions:
            again = self._restore(p)
        batch = [(o, k, v) for o, (k, v) in enumerate(log[start : start + self.rng.randint(1, 12)], start)]
        batch[:0] = again
        table = self.tables[p]
        out = self.step.process(p, batch, lambda key: unpack(table.get(key))[2])
        tag = batch[-1][0] + 1
        for key, (body, due) in out.states.items():
            table[key] = pack(tag, due, body)
            self.history[p].append((key, table[key]))
        table[b"~state"] = pack(tag, None, out.partition_state)
        self.history[p].append((b"~state", table[b"~state"]))
        self.position[p] = tag
        for name, pairs in (("sessions", out.sessions), ("stages", out.journey.transitions),
                            ("signals", out.journey.signals), ("profiles", out.journey.profiles),
                            ("failed", out.failed)):  # fmt: skip
            self.outputs[name].extend((k or b"", v) for k, v in pairs)
        if out.entries:
            self._publish(self.resolved, bundle(self.codec, out.entries, lambda k: partition_of(k, self.partitions),
                                        self.partitions))  # fmt: skip
        if self.rng.random() < 0.5:
            self.committed[p] = tag
            self.commits[p].append(tag)
        if self.rng.random() < self.crash_rate:
            self._crash(p)
        return True

    def _crash(self, p: int) -> None:
        """Lose the partition's runtime and every record written after its committed offset."""
        self.crashes += 1
        self.step.partitions.pop(p, None)
        # A stale recovery: the records are recovered as of an older commit than the one consumption resumes at
        # (the committed offsets were read before the previous owner's last commit landed).
        limit = self.rng.choice(self.commits[p]) if self.rng.random() < self.stale_rate else self.committed[p]
        self.tables[p] = {k: v for k, v in self.history[p] if unpack(v)[0] <= limit}
        self.position[p] = self.committed[p]

    def _restore(self, p: int) -> list[tuple[int, bytes, bytes]]:
        """As agents/journey.py: the runtime from the records; the messages the state is behind on, to apply
        first."""
        table = self.tables[p]
        tag, _due, raw = unpack(table.get(b"~state"))
        due = [(k, unpack(v)[1]) for k, v in table.items() if k != b"~state"]
        upto = self.position[p]
        log = self.resolved.logs[p]
        again: list[tuple[int, bytes, bytes]] = []
        start = catch_up_from(tag, upto, 0)
        if start is not None:
            again = [(o, k, v) for o, (k, v) in enumerate(log[start:upto], start)]
            self.caught_up += len(again)
            upto = start
        start = JourneyPartition.min_pending(raw)
        pending = [(o, k, v) for o, (k, v) in enumerate(log[start:upto], start)] if start is not None else []
        self.step.restore(p, raw, due, pending)
        return again

    # --- the run --------------------------------------------------------------------------------------------------

    def run(self) -> None:
        actors: list[Any] = [*(lambda s=s: self.ingest(s) for s in self.sources), self.write, self.replicate,
                             *(lambda p=p: self.journey(p) for p in range(self.partitions)),
                             *(lambda s=s: self._route(s) for s in self.sources)]  # fmt: skip
        idle_rounds = 0
        while idle_rounds < 3:
            order = list(range(len(actors)))
            self.rng.shuffle(order)
            progressed = False
            for i in order:
                for _ in range(self.rng.randint(1, 3)):
                    progressed |= bool(actors[i]())
            while not progressed and self.again:  # nothing else moves: flush the copies still owed
                self._again()
                progressed = True
            idle_rounds = 0 if progressed else idle_rounds + 1


def warehouse(outputs: dict[str, list[tuple[bytes, bytes]]], codec: AvroCodec) -> Reference:
    """The rows a sink would hold for these outputs (latest versions, ids followed through merges)."""
    rows = Reference()
    for _k, v in outputs["merges"]:
        m = codec.decode(v).record
        rows.merges[(m["old_id"], m["new_id"])] = dict(m)
        rows.final.setdefault(m["old_id"], m["new_id"])
    for _k, v in outputs["sessions"]:
        s = dict(codec.decode(v).record)
        known = rows.sessions.get(s["session_id"])
        if known is None or s["version"] > known["version"]:
            rows.sessions[s["session_id"]] = s
    for table, name, key in ((rows.transitions, "stages", "transition_id"), (rows.signals, "signals", "signal_id")):
        for _k, v in outputs[name]:
            record = dict(codec.decode(v).record)
            table.setdefault(record[key], record)
    for _k, v in outputs["profiles"]:
        record = dict(codec.decode(v).record)
        known = rows.profiles.get(record["customer_id"])
        if known is None or record["version"] > known["version"]:
            rows.profiles[record["customer_id"]] = record

    def final(customer: str) -> str:
        seen = {customer}
        while customer in rows.final and rows.final[customer] not in seen:
            customer = rows.final[customer]
            seen.add(customer)
        return customer

    for table in (rows.sessions, rows.transitions, rows.signals):
        for record in table.values():
            record["customer_id"] = final(record["customer_id"])
    rows.profiles = {k: v for k, v in rows.profiles.items() if k not in rows.final}
    return rows


def comparable(rows: Reference) -> dict[str, Any]:
    """Rows without the processing-time columns (docs/time.md)."""
    return {
        "sessions": rows.sessions,
        "transitions": rows.transitions,
        "signals": {k: {c: v for c, v in r.items() if c != "emitted_at"} for k, r in rows.signals.items()},
        "profiles": rows.profiles,
        "merges": rows.merges,
    }


def reference_config(lateness_ms: int, params: Any = None) -> ReferenceConfig:
    from pipeline.domain.sessions_summary import SessionPolicy
    from pipeline.steps.journey_signals import SignalsConfig

    return ReferenceConfig(SessionPolicy(grace_ms=lateness_ms), SignalsConfig(params=params), DEFAULT_POLICY)
