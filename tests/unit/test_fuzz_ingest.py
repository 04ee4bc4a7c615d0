"""Fuzzing ingest with every record the channel contracts allow (and corruptions of their bytes): every input
ends as exactly one canonical event or one failed event that decodes, and nothing raises.

``FUZZ_EXAMPLES`` (default 400 per channel) sets the size of a campaign; the closing figures come from
a run with a large value."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from pipeline.clock import ManualClock
from pipeline.domain.dedup import DedupWindow
from pipeline.domain.guard import InvalidRatioGuard
from pipeline.domain.ingest import IngestPolicy
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.quarantine import Quarantine
from pipeline.metrics import ingest_metrics
from pipeline.steps.ingest import IngestStep, RawMessage
from schemas.codec import AvroCodec
from schemas.registry import FileSchemaRegistry
from tests.avro_strategies import strategy
from tests.unit.test_ingest_step import NOW, SECRET

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
CODEC = AvroCodec(FileSchemaRegistry())
CHANNELS = ("web", "mobile", "store", "social")


def _records(channel: str) -> st.SearchStrategy[dict[str, object]]:
    return strategy(json.loads(CODEC.registry.latest(channel).schema_json), NOW)


def make_step(channel: str) -> IngestStep:
    policy = IngestPolicy(max_future_skew_ms=300_000, late_horizon_ms=400 * 86_400_000, max_event_bytes=4096)
    return IngestStep(channel, channel, CODEC, policy, Pseudonymiser(SECRET), Quarantine(SECRET), DedupWindow(100),
                      InvalidRatioGuard(window=100, limit=1.0, min_events=10), ingest_metrics(CollectorRegistry()),
                      ManualClock(NOW), 12 * 3_600_000)  # fmt: skip


def _one_outcome(channel: str, value: bytes) -> None:
    step = make_step(channel)
    out = step.process_batch([RawMessage(b"key", value, 0, 0)])
    assert len(out.canonical) + len(out.failed) == 1
    for _key, encoded in out.canonical:
        assert CODEC.decode(encoded).subject == "customer-event"
    for _key, encoded in out.failed:
        failed = CODEC.decode(encoded).record
        assert failed["source_offset"] == 0 and failed["rule"]


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_record_of_the_contract_has_exactly_one_outcome(channel: str) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(record=_records(channel), cut=st.one_of(st.none(), st.integers(0, 400)),
           flip=st.one_of(st.none(), st.tuples(st.integers(0, 400), st.integers(1, 255))))  # fmt: skip
    def run(record: dict[str, object], cut: int | None, flip: tuple[int, int] | None) -> None:
        value = bytearray(CODEC.encode(channel, record))
        if flip is not None and flip[0] < len(value):
            value[flip[0]] ^= flip[1]  # a corrupted byte anywhere, framing included
        if cut is not None:
            value = value[:cut]  # truncated
        _one_outcome(channel, bytes(value))

    run()
