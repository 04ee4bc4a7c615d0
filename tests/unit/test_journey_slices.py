"""The journey's work in slices (what the agent runs, with a turn of the event loop between slices) gives the same
records and outputs as the same batches in one go, and no slice runs more than its share of customers."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from pipeline.clock import ManualClock
from pipeline.metrics import journey_metrics
from pipeline.metrics_journey import journey_signal_metrics
from pipeline.models.bgnbd import MBGNBD, BgParams
from pipeline.models.gammagamma import GgParams
from pipeline.models.params import ModelParams
from pipeline.simulate.config import SimConfig
from pipeline.steps.bundles import Entry, Mark, bundle
from pipeline.steps.journey import JourneyOutput, JourneyStep
from pipeline.steps.journey_signals import JourneySignals, SignalsConfig
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.unit.pipeline_model import reference_config, simulated_events

CODEC = AvroCodec(FileSchemaRegistry())
HOUR = 3_600_000
SOURCE = "web/0"
PARAMS = ModelParams("t", MBGNBD, BgParams(0.5, 6.0, 0.9, 1.6), GgParams(6.25, 3.74, 15.44), 7.0, 0, 0, "", "",
                     activity=BgParams(0.8, 4.0, 0.7, 2.0))  # fmt: skip

Batch = list[tuple[int, bytes, bytes]]
Run = Callable[[JourneyStep, Batch, Callable[[bytes], bytes | None]], tuple[JourneyOutput, int]]


def _step() -> JourneyStep:
    registry = CollectorRegistry()
    clock = ManualClock(10**12)  # signals carry the processing time they were emitted at
    signals = JourneySignals(SignalsConfig(params=PARAMS), CODEC, journey_signal_metrics(registry), clock)
    return JourneyStep(CODEC, reference_config(HOUR).session, journey_metrics(registry), lambda _b: "sealed",
                       "resolved-events", [SOURCE], signals, clock)  # fmt: skip


def _batches() -> list[Batch]:
    """Six hours of events per batch over a few days, each batch moving the watermark to its end."""
    events = sorted(simulated_events(SimConfig(customers=60, days=4, seed=5, end_ms=10**12 + 4 * 24 * HOUR), 1),
                    key=lambda e: (e["event_time"], e["event_id"]))  # fmt: skip
    start = (events[0]["event_time"] // HOUR) * HOUR
    out, offset, at = [], 0, 0
    for end in range(start + 6 * HOUR, events[-1]["event_time"] + 2 * 24 * HOUR, 6 * HOUR):
        entries = []
        while at < len(events) and events[at]["event_time"] < end:
            e = events[at]
            key = (e["customer_id"] or e["anonymous_id"] or e["device_id"] or "anon").encode()
            entries.append(Entry(key, CODEC.encode("customer-event", dict(e)), e["event_time"], e["event_time"],
                                 e["event_id"]))  # fmt: skip
            at += 1
        messages = bundle(CODEC, entries, lambda _k: 0, 1, [Mark(SOURCE, end)])
        out.append([(offset + i, k, v) for i, (k, v) in enumerate(messages)])
        offset += len(messages)
    return out


def _run(step: JourneyStep, go: Run) -> list[tuple[JourneyOutput, int]]:
    records: dict[bytes, bytes] = {}
    results = []
    for batch in _batches():
        out, pauses = go(step, batch, records.get)
        records.update({k: body for k, (body, _due) in out.states.items()})
        results.append((out, pauses))
    return results


def _whole(step: JourneyStep, batch: Batch, load: Callable[[bytes], bytes | None]) -> tuple[JourneyOutput, int]:
    return step.process(0, batch, load), 0


def _sliced(size: int) -> Run:
    def go(step: JourneyStep, batch: Batch, load: Callable[[bytes], bytes | None]) -> tuple[JourneyOutput, int]:
        out = JourneyOutput()
        pauses, seen = 0, 0
        for _ in step.slices(0, batch, load, out, size=size):
            assert len(out.states) - seen <= size  # no slice runs more than its share of customers
            seen = len(out.states)
            pauses += 1
        return out, pauses

    return go


def test_slices_give_the_same_records_and_outputs_as_one_go() -> None:
    whole = _run(_step(), _whole)
    sliced = _run(_step(), _sliced(3))
    assert len(whole) == len(sliced)
    for (a, _), (b, _) in zip(whole, sliced, strict=True):
        assert a.states == b.states
        assert a.partition_state == b.partition_state
        assert (a.sessions, a.failed, a.journey, a.entries, a.watermark, a.erased) == (
            b.sessions, b.failed, b.journey, b.entries, b.watermark, b.erased)  # fmt: skip
    profiles = sum(len(out.journey.profiles) for out, _ in whole)
    assert profiles > 0 and sum(len(out.states) for out, _ in whole) > 0
    # A midnight makes every scored customer due at once: those batches pause many times.
    assert max(pauses for _, pauses in sliced) >= 5


def test_a_slice_size_larger_than_the_batch_does_not_pause() -> None:
    assert all(pauses == 0 for _, pauses in _run(_step(), _sliced(10**6)))


def _passes(cap: int) -> Run:
    """As the agent runs a batch: a pass over its messages, then passes without messages while customers are
    left due; each pass runs at most ``cap`` customers for their timers alone."""

    def go(step: JourneyStep, batch: Batch, load: Callable[[bytes], bytes | None]) -> tuple[JourneyOutput, int]:
        merged, passes, messages = JourneyOutput(), 0, batch
        while True:
            out = JourneyOutput()
            for _ in step.slices(0, messages, load, out, max_due=cap):
                pass
            passes += 1
            assert len(out.states) <= cap or messages  # a pass without messages runs timers alone
            for key, (body, due) in out.states.items():
                assert key not in merged.states  # a customer runs once per batch, whatever the passes
                merged.states[key] = (body, due)
            merged.sessions += out.sessions
            merged.journey.profiles += out.journey.profiles
            merged.journey.signals += out.journey.signals
            merged.journey.transitions += out.journey.transitions
            merged.partition_state, merged.watermark, messages = out.partition_state, out.watermark, []
            if not step.due_left(0):
                return merged, passes

    return go


def test_passes_of_a_bounded_number_of_due_customers_give_the_records_and_outputs_of_one_go() -> None:
    whole = _run(_step(), _whole)
    capped = _run(_step(), _passes(4))
    for (a, _), (b, _) in zip(whole, capped, strict=True):
        assert a.states == b.states
        assert a.partition_state == b.partition_state and a.watermark == b.watermark
        for pick in (lambda o: o.sessions, lambda o: o.journey.profiles, lambda o: o.journey.signals,
                     lambda o: o.journey.transitions):  # fmt: skip
            assert sorted(pick(a)) == sorted(pick(b))
    # A midnight makes more than four customers due: some batches took several passes.
    assert max(passes for _, passes in capped) >= 3
