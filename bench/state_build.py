"""Journey state for N customers, built from real customer records (the ``state`` step, bench/state_scale.py).

A sample of simulated customers (``pipeline.simulate``, a month of activity) is run through the real
:class:`~pipeline.steps.journey.JourneyStep` offline, one hour of event time per batch, with fitted-looking BTYD
parameters for purchases *and* activity, so that every active customer is scored and re-scored at each UTC
midnight (the worst case for the day crossing). The resulting records (the project's own JSON encoding, with
the due time the step computed) are the templates; customer ``i`` of N is template ``i % sample`` under a fresh
profile id of the same shape (``p:`` + 16 hex), substituted in the key and inside the body.

Not realistic: copies of one template share its due time, so a minute in which a template's session closes
fires N / sample customers at once (pessimistic for the per-minute ticks; the day crossing is as real as it
gets, since every scored customer is due at midnight anyway).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from pipeline.clock import ManualClock
from pipeline.domain.ingest import IngestPolicy, canonicalise
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.records import CustomerEventRecord, Rejection, SourceRef
from pipeline.domain.sessions_summary import SessionPolicy
from pipeline.metrics import journey_metrics
from pipeline.metrics_journey import journey_signal_metrics
from pipeline.models.bgnbd import MBGNBD, BgParams
from pipeline.models.gammagamma import GgParams
from pipeline.models.params import ModelParams
from pipeline.simulate.config import SimConfig
from pipeline.simulate.simulation import Simulation
from pipeline.steps.bundles import Entry, Mark, bundle
from pipeline.steps.journey import JourneyStep
from pipeline.steps.journey_signals import JourneySignals, SignalsConfig
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry

HOUR = 3_600_000
DAY = 24 * HOUR
SOURCE = "bench-state/0"  # the one expected source of the offline step
#: Shaped like a weekly BG/NBD fit on the simulator's traffic (parameters of the project's churn tests).
PARAMS = ModelParams("bench-state", MBGNBD, BgParams(0.5, 6.0, 0.9, 1.6), GgParams(6.25, 3.74, 15.44), 7.0, 0, 0,
                     "", "", activity=BgParams(0.8, 4.0, 0.7, 2.0))  # fmt: skip
END_MS = 1_767_225_600_000 + 12 * HOUR  # 2026-01-01 12:00 UTC: the state is taken half-way through a day


@dataclass(frozen=True)
class Template:
    """One real customer record: its profile id, encoded body and next due time."""

    key: bytes
    body: bytes
    due: int | None


def codec() -> AvroCodec:
    return AvroCodec(FileSchemaRegistry())


def new_step(policy: SessionPolicy, registry: CollectorRegistry | None = None) -> JourneyStep:
    """A journey step as the worker builds it, with one expected source and the bench's model parameters."""
    registry = registry or CollectorRegistry()
    c = codec()
    clock = ManualClock(END_MS)  # signals record when they were sent: a fixed clock makes two runs comparable
    signals = JourneySignals(SignalsConfig(params=PARAMS), c, journey_signal_metrics(registry), clock)
    return JourneyStep(c, policy, journey_metrics(registry), lambda _b: "sealed", "resolved-events", [SOURCE],
                       signals, clock)  # fmt: skip


def tick(c: AvroCodec, mark: int) -> tuple[bytes, bytes]:
    """A resolved-events message with no items that moves the partition's watermark to ``mark``."""
    return bundle(c, [], lambda _k: 0, 1, [Mark(SOURCE, mark)])[0]


def sample_events(customers: int, days: int, seed: int) -> list[tuple[bytes, CustomerEventRecord]]:
    """(profile id, canonical event) of a simulation, valid events only, in event-time order."""
    config = SimConfig(customers=customers, days=days, seed=seed, end_ms=END_MS, bad_share=0.0)
    policy = IngestPolicy(300_000, 400 * DAY, 65536)
    pseudo = Pseudonymiser(b"bench-state")
    c = codec()
    out: list[tuple[bytes, CustomerEventRecord]] = []
    for offset, msg in enumerate(Simulation(config).messages()):
        if msg.record is None or msg.subject != msg.channel or msg.person_id is None:
            continue
        decoded = c.decode(c.encode(msg.subject, msg.record, msg.version))
        canon = canonicalise(msg.channel, dict(decoded.record), SourceRef(msg.channel, 0, offset, decoded.schema_id),
                             END_MS, policy, pseudo)  # fmt: skip
        if not isinstance(canon, Rejection) and canon["event_time"] < END_MS:
            out.append((profile_id(msg.person_id.encode()), canon))
    out.sort(key=lambda kv: (kv[1]["event_time"], kv[1]["event_id"]))
    return out


def profile_id(seed: bytes) -> bytes:
    return b"p:" + hashlib.sha256(seed).hexdigest()[:16].encode()


def hourly_batches(events: list[tuple[bytes, CustomerEventRecord]]) -> list[list[tuple[int, bytes, bytes]]]:
    """``events`` (in event-time order) as resolved-events batches of one hour each, up to ``END_MS``, each
    moving the watermark to the hour's end: (offset, key, value) of one partition."""
    c = codec()
    batches: list[list[tuple[int, bytes, bytes]]] = []
    offset, at = 0, 0
    start = (events[0][1]["event_time"] // HOUR) * HOUR if events else END_MS
    for hour_end in range(start + HOUR, END_MS + 1, HOUR):
        entries = []
        while at < len(events) and events[at][1]["event_time"] < hour_end:
            key, ev = events[at]
            value = c.encode("customer-event", dict(ev))
            entries.append(Entry(key, value, ev["event_time"], ev["event_time"], ev["event_id"]))
            at += 1
        messages = bundle(c, entries, lambda _k: 0, 1, [Mark(SOURCE, hour_end)])
        batches.append([(offset + i, k, v) for i, (k, v) in enumerate(messages)])
        offset += len(messages)
    return batches


def templates(policy: SessionPolicy, customers: int = 3000, days: int = 30, seed: int = 11) -> list[Template]:
    """Run a simulated sample through a real journey step up to ``END_MS``; the records it ends with."""
    step = new_step(policy)
    records: dict[bytes, tuple[bytes, int | None]] = {}
    for batch in hourly_batches(sample_events(customers, days, seed)):
        out = step.process(0, batch, lambda k: records[k][0] if k in records else None)
        records.update(out.states)
        for key in out.erased:
            records.pop(key, None)
    return [Template(k, body, due) for k, (body, due) in sorted(records.items())]


def customers(sample: list[Template], n: int) -> Iterator[tuple[bytes, bytes, int | None]]:
    """(key, body, due) of ``n`` customers: template ``i % len(sample)`` under a fresh id of the same shape."""
    for i in range(n):
        t = sample[i % len(sample)]
        key = profile_id(i.to_bytes(8, "big") + b"bench")
        yield key, t.body.replace(t.key, key), t.due
