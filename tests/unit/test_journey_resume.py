"""A partition that comes back after being idle: its new events may be applied behind their customer's clock,
but what its new owner re-reads from before the idle mark is a replay and is applied once only."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from pipeline.domain.records import CustomerEventRecord
from pipeline.metrics import journey_metrics
from pipeline.simulate.config import SimConfig
from pipeline.steps.bundles import Entry, Mark, bundle
from pipeline.steps.journey import WRITER, JourneyStep, input_source
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.unit.pipeline_model import reference_config, simulated_events

CODEC = AvroCodec(FileSchemaRegistry())
HOUR = 3_600_000
KEY = b"c:resume-test"


def _event(base: CustomerEventRecord, eid: str, t: int, topic: str) -> Entry:
    record: dict[str, Any] = {**base, "event_id": eid, "event_time": t, "source_topic": topic, "source_partition": 0}
    return Entry(KEY, CODEC.encode("customer-event", record), t, t, eid)


def test_a_replay_after_idleness_is_skipped_and_a_straggler_is_applied() -> None:
    base = next(e for e in simulated_events(SimConfig(customers=20, days=2, seed=3, end_ms=10**12), 1)
                if e["event_type"] == "page_view")  # fmt: skip
    registry = CollectorRegistry()
    quiet, busy = input_source("web", 0), input_source("store", 0)
    step = JourneyStep(CODEC, reference_config(12 * HOUR).session, journey_metrics(registry), lambda b: "sealed",
                       "resolved-events", [quiet, busy, WRITER])  # fmt: skip
    t0 = base["event_time"]
    e1, e2 = _event(base, "e1", t0, "web"), _event(base, "e2", t0 + HOUR, "web")
    e4 = _event(base, "e4", t0 + 10 * HOUR, "store")
    e3 = _event(base, "e3", t0 + 5 * HOUR, "web")  # older than e4: behind the customer's clock when it comes
    far = t0 + 100 * HOUR

    def message(entries: list[Entry], marks: list[Mark]) -> tuple[bytes, bytes]:
        return bundle(CODEC, entries, lambda _k: 0, 1, marks)[0]

    batch = [
        message([e1, e2], [Mark(quiet, t0 + HOUR + 1)]),
        message([e4], [Mark(busy, t0 + 10 * HOUR + 1), Mark(WRITER, far)]),
        message([], [Mark(quiet, t0 + HOUR + 1, idle=True)]),  # consumed to its end and silent
    ]
    records: dict[bytes, bytes] = {}

    def run(messages: list[tuple[bytes, bytes]], first: int) -> None:
        out = step.process(0, [(first + i, k, v) for i, (k, v) in enumerate(messages)], records.get)
        records.update({k: body for k, (body, _due) in out.states.items()})

    run(batch, 0)
    applied = registry.get_sample_value("omnistream_journey_events_total")
    assert applied == 3
    # The partition comes back: its new owner re-reads e2 (before the idle mark) and then delivers e3.
    run([message([e2, e3], [Mark(quiet, t0 + 5 * HOUR + 1)]), message([], [Mark(busy, far)])], 3)
    assert registry.get_sample_value("omnistream_journey_events_total") == applied + 1  # e3, not e2 again
    assert registry.get_sample_value("omnistream_journey_events_behind_total") == 1
