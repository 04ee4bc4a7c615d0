"""IngestStep: raw messages through the real codec and domain rules, without Kafka."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline.clock import ManualClock
from pipeline.domain.dedup import DedupWindow
from pipeline.domain.guard import InvalidRatioGuard, UpstreamBrokenError
from pipeline.domain.ingest import IngestPolicy
from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.quarantine import Quarantine
from pipeline.metrics import ingest_metrics
from pipeline.steps.ingest import IngestStep, RawMessage, routing_key
from schemas.codec import AvroCodec, frame
from schemas.registry import FileSchemaRegistry

NOW = 1_780_000_000_000
SECRET = b"unit-test-secret"
EMAIL = "Jane.Doe@Example.com"
PHONE = "+1 415 555 0100"


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(FileSchemaRegistry())


def make_step(codec: AvroCodec, limit: float = 1.0, registry: CollectorRegistry | None = None) -> IngestStep:
    return IngestStep(
        "web",
        "web",
        codec,
        IngestPolicy(max_future_skew_ms=300_000, late_horizon_ms=400 * 86_400_000, max_event_bytes=4096),
        Pseudonymiser(SECRET),
        Quarantine(SECRET),
        DedupWindow(1000),
        InvalidRatioGuard(window=100, limit=limit, min_events=10),
        ingest_metrics(registry or CollectorRegistry()),
        ManualClock(NOW),
        12 * 3_600_000,
    )


def web_event(event_id: str, **identifiers: Any) -> dict[str, Any]:
    ids = {"anonymous_id": "cookie-1", **identifiers}
    return {
        "envelope": {"event_id": event_id, "event_time": NOW - 60_000, "identifiers": ids},
        "event_type": "add_to_cart",
        "product_id": "P-1",
        "quantity": 1,
        "unit_price_minor": 1999,
        "currency": "EUR",
        "page_url": "https://shop.example/p/1?utm=x",
    }


def messages(values: list[bytes]) -> list[RawMessage]:
    return [RawMessage(b"k", v, 0, i) for i, v in enumerate(values)]


def test_every_input_has_exactly_one_outcome(codec: AvroCodec) -> None:
    store_bytes = codec.encode(
        "store",
        {
            "envelope": {"event_id": "s1", "event_time": NOW, "identifiers": {"loyalty_id": "L1"}},
            "event_type": "store_visit",
            "store_id": "S1",
        },
    )
    values = [
        codec.encode("web", web_event("e1", email=EMAIL)),
        codec.encode("web", web_event("e2"), version=1),  # an old producer still on web v1
        codec.encode("web", web_event("e1", email=EMAIL)),  # duplicate
        b"\x07garbage",
        frame(12345, b"\x00\x01"),  # unknown schema id
        store_bytes,  # wrong subject on the web topic
        codec.encode("web", web_event("e3", anonymous_id="undefined")),  # only a placeholder identifier
        b"\x00" * 5000,  # over max_event_bytes
    ]
    out = make_step(codec).process_batch(messages(values))
    assert len(out.canonical) == 2
    assert out.duplicates == 1
    types = [codec.decode(v).record["failure_type"] for _, v in out.failed]
    assert types == ["decode_error", "unknown_schema", "schema_violation", "validation_error", "size_violation"]
    assert len(out.canonical) + len(out.failed) + out.duplicates == len(values)
    ids = [codec.decode(v).record["event_id"] for _, v in out.canonical]
    assert ids == ["e1", "e2"]


def test_failed_events_keep_sealed_original_bytes(codec: AvroCodec) -> None:
    raw = codec.encode("web", web_event("e9", anonymous_id="null", email="n/a"))
    out = make_step(codec).process_batch([RawMessage(b"key-1", raw, 3, 42)])
    record = codec.decode(out.failed[0][1]).record
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == ("web", 3, 42)
    assert record["rule"] == "no_identifier"
    assert Quarantine(SECRET).open(record["original_sealed"]) == raw
    assert Quarantine(SECRET).open(record["source_key_sealed"]) == b"key-1"


def test_no_raw_pii_in_any_output(codec: AvroCodec) -> None:
    good = codec.encode("web", web_event("p1", email=EMAIL, phone=PHONE))
    truncated = codec.encode("web", web_event("p2", email=EMAIL, phone=PHONE))[:-3]
    key = EMAIL.encode()  # producers often key by a raw identifier
    out = make_step(codec).process_batch([RawMessage(key, good, 0, 0), RawMessage(key, truncated, 0, 1)])
    assert len(out.canonical) == 1 and len(out.failed) == 1
    needles = [EMAIL.lower().encode(), EMAIL.encode(), b"415 555 0100", b"4155550100", b"Jane.Doe"]
    for key, value in out.canonical + out.failed:
        for needle in needles:
            assert needle not in value
            assert key is None or needle not in key
    event = codec.decode(out.canonical[0][1]).record
    assert event["email_hash"] and event["phone_hash"]
    assert event["page"] == "/p/1"


def test_guard_stops_a_broken_upstream(codec: AvroCodec) -> None:
    step = make_step(codec, limit=0.5)
    good = codec.encode("web", web_event("g1"))
    with pytest.raises(UpstreamBrokenError):
        step.process_batch(messages([good] + [b"\x09junk"] * 30))


def test_routing_key_prefers_person_specific_identifiers() -> None:
    assert routing_key({"anonymous_id": "c1", "customer_id": "C9"}) == b"customer_id:C9"
    assert routing_key({"anonymous_id": "c1", "customer_id": None}) == b"anonymous_id:c1"
    assert routing_key({}) is None


def test_metrics_count_outcomes_with_bounded_labels(codec: AvroCodec) -> None:
    registry = CollectorRegistry()
    step = make_step(codec, registry=registry)
    step.process_batch(messages([codec.encode("web", web_event("m1")), b"\x05bad"]))
    get = registry.get_sample_value
    assert get("omnistream_events_in_total", {"channel": "web"}) == 2
    assert get("omnistream_canonical_events_total", {"channel": "web", "event_type": "add_to_cart"}) == 1
    assert get("omnistream_failed_events_total", {"channel": "web", "failure_type": "decode_error"}) == 1


def test_the_batch_reports_per_partition_the_largest_delay_between_an_event_and_its_arrival(codec: AvroCodec) -> None:
    def encoded(event_id: str, age_ms: int) -> bytes:
        event = web_event(event_id)
        event["envelope"]["event_time"] = NOW - age_ms
        return codec.encode("web", event)

    out = make_step(codec).process_batch([
        RawMessage(b"k", encoded("a", 300), 0, 0, arrived_ms=NOW - 100),
        RawMessage(b"k", encoded("b", 250), 0, 1, arrived_ms=NOW),
        RawMessage(b"k", encoded("c", 50), 1, 0, arrived_ms=NOW),
        RawMessage(b"k", encoded("d", 9_000), 2, 0),  # arrival unknown: says nothing about its partition
        RawMessage(b"k", b"not avro", 3, 0, arrived_ms=NOW),  # no event time
    ])  # fmt: skip
    assert out.delays == {0: 250, 1: 50}
