"""AvroCodec: framing, round trips per subject, reader/writer resolution, and every failure class."""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import AvroCodec, Decoded, frame, unframe
from schemas.errors import (
    AvroDecodeError,
    CodecError,
    EncodeError,
    FramingError,
    IncompatibleSchemaError,
    RegistryUnavailableError,
    SubjectMismatchError,
    UnknownSchemaError,
)
from schemas.registry import FileSchemaRegistry, RegisteredSchema, make_registered

T0 = 1_732_370_000_123  # 2024-11-23T14:33:20.123Z in epoch millis


def envelope(event_id: str = "evt-0001", **identifiers: str) -> dict[str, Any]:
    ids: dict[str, str | None] = {
        "anonymous_id": None,
        "device_id": None,
        "customer_id": None,
        "email": None,
        "phone": None,
        "loyalty_id": None,
        "social_handle": None,
    }
    ids.update(identifiers)
    return {
        "event_id": event_id,
        "event_time": T0,
        "identifiers": ids,
        "consent": {"marketing": True, "analytics": True, "personalization": None},
        "attribution": {
            "campaign_id": "cmp-42",
            "utm_source": "google",
            "utm_medium": "cpc",
            "utm_campaign": "w24",
        },
    }


ITEMS = [
    {"product_id": "sku-123", "quantity": 2, "unit_price_minor": 1999},
    {"product_id": "sku-777", "quantity": 1, "unit_price_minor": 4500},
]


def sample_records() -> dict[str, dict[str, Any]]:
    """One complete, realistic record per subject (every field present, so round trips compare equal)."""
    web = {
        "envelope": envelope("web-1", anonymous_id="anon-7f3a9c", email="alice@example.com"),
        "event_type": "purchase",
        "page_url": "https://shop.example.com/checkout/done",
        "referrer": "https://www.google.com/",
        "product_id": None,
        "quantity": None,
        "unit_price_minor": None,
        "search_query": None,
        "order_id": "ord-9001",
        "items": ITEMS,
        "amount_minor": 8498,
        "currency": "EUR",
    }
    mobile = {
        "envelope": envelope("mob-1", device_id="dev-ios-55", customer_id="cust-17"),
        "event_type": "add_to_cart",
        "screen_name": "ProductDetail",
        "app_version": "5.2.1",
        "os": "iOS 18.1",
        "product_id": "sku-123",
        "quantity": 1,
        "unit_price_minor": 1999,
        "order_id": None,
        "items": [],
        "amount_minor": None,
        "currency": "EUR",
        "store_id": None,
    }
    store = {
        "envelope": envelope("sto-1", loyalty_id="LOY-000123", phone="+4915112345678"),
        "event_type": "pos_purchase",
        "store_id": "store-berlin-01",
        "visit_method": None,
        "receipt_id": "rcpt-555",
        "original_receipt_id": None,
        "items": ITEMS,
        "amount_minor": 8498,
        "currency": "EUR",
    }
    social = {
        "envelope": envelope("soc-1", social_handle="@alice"),
        "event_type": "review",
        "platform": "instagram",
        "text": "Love the new jacket!",
        "rating": 5,
        "sentiment": 0.875,
        "product_id": "sku-777",
    }
    canonical = {
        "event_id": "web-1",
        "event_time": T0,
        "ingested_at": T0 + 250,
        "channel": "web",
        "event_type": "purchase",
        "anonymous_id": "anon-7f3a9c",
        "device_id": None,
        "customer_id": None,
        "email_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "phone_hash": None,
        "loyalty_id": None,
        "social_handle": None,
        "consent_marketing": True,
        "consent_analytics": True,
        "campaign_id": "cmp-42",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "w24",
        "product_id": None,
        "quantity": None,
        "unit_price_minor": None,
        "items": ITEMS,
        "amount_minor": 8498,
        "currency": "EUR",
        "order_id": "ord-9001",
        "store_id": None,
        "visit_method": None,
        "page": "/checkout/done",
        "search_query": None,
        "platform": None,
        "rating": None,
        "sentiment": None,
        "source_topic": "web",
        "source_partition": 3,
        "source_offset": 123456789,
        "schema_id": 846804907,
    }
    failed = {
        "failure_type": "decode_error",
        "rule": "trailing_bytes",
        "reason": "3 trailing bytes after a web v2 record",
        "event_id": None,
        "schema_id": 846804907,
        "source_topic": "web",
        "source_partition": 0,
        "source_offset": 42,
        "source_key_sealed": None,
        "original_sealed": "gAAAAABnQf3kq0sZ2b8x5mH2d9Lr1w==",
        "original_bytes": 312,
        "original_hmac": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "processor": "ingest/0.1.0",
        "failed_at": T0,
    }
    return {
        "web": web,
        "mobile": mobile,
        "store": store,
        "social": social,
        "customer-event": canonical,
        "failed-event": failed,
    }


@functools.cache
def _bundled() -> FileSchemaRegistry:
    return FileSchemaRegistry()


@pytest.fixture()
def registry() -> FileSchemaRegistry:
    return _bundled()


@pytest.fixture()
def codec(registry: FileSchemaRegistry) -> AvroCodec:
    return AvroCodec(registry)


@pytest.mark.parametrize("subject", sorted(sample_records()))
def test_round_trip_every_subject(codec: AvroCodec, registry: FileSchemaRegistry, subject: str) -> None:
    record = sample_records()[subject]
    data = codec.encode(subject, record)
    latest = registry.latest(subject)
    assert data[0] == 0 and struct.unpack(">I", data[1:5])[0] == latest.schema_id
    decoded = codec.decode(data, expected_subjects={subject})
    assert decoded == Decoded(latest.schema_id, subject, latest.version, record)


def test_timestamps_decode_as_int_millis_and_encode_accepts_int_or_datetime(codec: AvroCodec) -> None:
    record = sample_records()["web"]
    assert type(codec.decode(codec.encode("web", record)).record["envelope"]["event_time"]) is int
    as_datetime = copy.deepcopy(record)
    as_datetime["envelope"]["event_time"] = datetime.fromtimestamp(T0 / 1000, tz=UTC)
    decoded = codec.decode(codec.encode("web", as_datetime)).record
    assert decoded["envelope"]["event_time"] == T0
    canonical = codec.decode(codec.encode("customer-event", sample_records()["customer-event"])).record
    assert (canonical["event_time"], canonical["ingested_at"]) == (T0, T0 + 250)


def test_web_v1_producer_is_read_as_v2_with_referrer_none(codec: AvroCodec, registry: FileSchemaRegistry) -> None:
    v1_record = {k: v for k, v in sample_records()["web"].items() if k != "referrer"}
    data = codec.encode("web", v1_record, version=1)
    assert unframe(data)[0] == registry.get("web", 1).schema_id != registry.latest("web").schema_id
    decoded = codec.decode(data, expected_subjects={"web"})
    assert (decoded.subject, decoded.writer_version, decoded.schema_id) == (
        "web",
        1,
        registry.get("web", 1).schema_id,
    )
    assert decoded.record == {**v1_record, "referrer": None}
    # Resolution appends defaulted fields at the end; order is irrelevant, the key set is the contract.
    latest_fields = {f["name"] for f in json.loads(registry.latest("web").schema_json)["fields"]}
    assert set(decoded.record) == latest_fields


def test_web_v2_round_trip_keeps_referrer(codec: AvroCodec) -> None:
    record = sample_records()["web"]
    decoded = codec.decode(codec.encode("web", record, version=2))
    assert decoded.writer_version == 2 and decoded.record["referrer"] == "https://www.google.com/"


def test_encode_fills_defaults_for_omitted_optional_fields(codec: AvroCodec) -> None:
    minimal = {"envelope": envelope("e-min", anonymous_id="a-1"), "event_type": "page_view"}
    record = codec.decode(codec.encode("web", minimal)).record
    assert record["items"] == [] and record["referrer"] is None and record["page_url"] is None


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01", b"hello world", b"\x01" + b"\x00" * 20])
def test_garbage_is_a_framing_error(codec: AvroCodec, data: bytes) -> None:
    with pytest.raises(FramingError) as info:
        codec.decode(data)
    assert info.value.failure_type == "decode_error"


def test_unknown_schema_id(codec: AvroCodec) -> None:
    with pytest.raises(UnknownSchemaError) as info:
        codec.decode(frame(123, b"\x02ab"))
    assert (info.value.failure_type, info.value.schema_id) == ("unknown_schema", 123)


def test_truncated_body(codec: AvroCodec) -> None:
    data = codec.encode("web", sample_records()["web"])
    for cut in (6, len(data) // 2, len(data) - 1):
        with pytest.raises(AvroDecodeError) as info:
            codec.decode(data[:cut])
        assert info.value.failure_type == "decode_error"


def test_trailing_bytes_are_corrupt(codec: AvroCodec) -> None:
    data = codec.encode("web", sample_records()["web"])
    with pytest.raises(AvroDecodeError) as info:
        codec.decode(data + b"\x00\x00")
    assert info.value.rule == "trailing_bytes"


def test_store_event_on_web_topic_is_a_subject_mismatch(codec: AvroCodec, registry: FileSchemaRegistry) -> None:
    data = codec.encode("store", sample_records()["store"])
    with pytest.raises(SubjectMismatchError) as info:
        codec.decode(data, expected_subjects={"web"})
    assert info.value.failure_type == "schema_violation"
    assert info.value.schema_id == registry.latest("store").schema_id


def test_failure_types_are_failed_event_enum_symbols(registry: FileSchemaRegistry) -> None:
    fields = json.loads(registry.latest("failed-event").schema_json)["fields"]
    symbols = next(f["type"]["symbols"] for f in fields if f["name"] == "failure_type")
    errors = [
        FramingError,
        UnknownSchemaError,
        AvroDecodeError,
        SubjectMismatchError,
        IncompatibleSchemaError,
    ]
    assert {e.failure_type for e in errors} <= set(symbols)
    assert not issubclass(RegistryUnavailableError, CodecError)


class _CountingRegistry:
    """Wraps a registry, counting lookups; can be switched to fail like an unreachable server."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls, self.down = inner, 0, False

    def _hit(self) -> None:
        self.calls += 1
        if self.down:
            raise RegistryUnavailableError("registry down")

    def by_id(self, schema_id: int) -> RegisteredSchema:
        self._hit()
        return self.inner.by_id(schema_id)  # type: ignore[no-any-return]

    def latest(self, subject: str) -> RegisteredSchema:
        self._hit()
        return self.inner.latest(subject)  # type: ignore[no-any-return]

    def get(self, subject: str, version: int) -> RegisteredSchema:
        self._hit()
        return self.inner.get(subject, version)  # type: ignore[no-any-return]

    def subjects(self) -> list[str]:
        return self.inner.subjects()  # type: ignore[no-any-return]


def test_lookups_are_cached_and_registry_outage_is_not_a_codec_error(registry: FileSchemaRegistry) -> None:
    counting = _CountingRegistry(registry)
    codec = AvroCodec(counting)
    data = AvroCodec(registry).encode("web", sample_records()["web"])
    for _ in range(100):
        codec.decode(data)
    assert counting.calls == 2  # by_id + latest, once
    counting.down = True
    codec.decode(data)  # cached: no registry needed
    store = AvroCodec(registry).encode("store", sample_records()["store"])
    with pytest.raises(RegistryUnavailableError):
        codec.decode(store)


def test_writer_that_the_reader_cannot_resolve_is_a_schema_violation() -> None:
    def schema(fields: list[dict[str, Any]]) -> dict[str, Any]:
        return {"type": "record", "name": "T", "namespace": "x", "fields": fields}

    old = make_registered("t", 1, schema([{"name": "a", "type": "string"}]), schema_id=1)
    new = make_registered("t", 2, schema([{"name": "a", "type": "string"}, {"name": "b", "type": "int"}]), 2)

    class Broken:
        def by_id(self, schema_id: int) -> RegisteredSchema:
            return {1: old, 2: new}[schema_id]

        def latest(self, subject: str) -> RegisteredSchema:
            return new

        def get(self, subject: str, version: int) -> RegisteredSchema:
            return {1: old, 2: new}[version]

        def subjects(self) -> list[str]:
            return ["t"]

    codec = AvroCodec(Broken())
    with pytest.raises(IncompatibleSchemaError) as info:
        codec.decode(codec.encode("t", {"a": "x"}, version=1))
    assert info.value.failure_type == "schema_violation"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_type": "teleport"}, "event_type"),
        ({"quantity": "two"}, "quantity"),
        ({"envelope": None}, "envelope"),
    ],
)
def test_encode_names_the_offending_field(codec: AvroCodec, change: dict[str, Any], field: str) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode("web", {**sample_records()["web"], **change})
    assert isinstance(info.value, ValueError) and field in str(info.value) and "web v2" in str(info.value)
    assert all(len(e) <= 300 for e in info.value.errors)


def test_frame_unframe(codec: AvroCodec) -> None:
    data = frame(846804907, b"body")
    assert data == b"\x00" + (846804907).to_bytes(4, "big") + b"body"
    schema_id, body = unframe(bytearray(data))
    assert (schema_id, bytes(body), type(body)) == (846804907, b"body", memoryview)
    record = codec.encode("web", sample_records()["web"])
    assert codec.decode(memoryview(record)).record == codec.decode(bytearray(record)).record


def test_tmp_schema_dir_evolution_through_codec(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "type": "record",
        "name": "Click",
        "namespace": "t.click",
        "fields": [{"name": "id", "type": "string"}],
    }
    v2 = copy.deepcopy(base)
    v2["fields"].append({"name": "button", "type": ["null", "string"], "default": None})
    (tmp_path / "subjects" / "click").mkdir(parents=True)
    (tmp_path / "subjects" / "click" / "v1.avsc").write_text(json.dumps(base))
    (tmp_path / "subjects" / "click" / "v2.avsc").write_text(json.dumps(v2))
    codec = AvroCodec(FileSchemaRegistry(tmp_path))
    assert codec.decode(codec.encode("click", {"id": "c1"}, version=1)).record == {"id": "c1", "button": None}
    assert codec.decode(codec.encode("click", {"id": "c2", "button": "buy"})).record == {
        "id": "c2",
        "button": "buy",
    }


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=10_000))
def test_fuzzed_bodies_only_ever_raise_codec_errors(body: bytes, flip: int) -> None:
    registry = _bundled()
    codec = AvroCodec(registry)
    valid = bytearray(codec.encode("web", sample_records()["web"]))
    valid[5 + flip % (len(valid) - 5)] ^= 0xFF
    for data in (
        frame(registry.latest("web").schema_id, body),
        frame(registry.get("web", 1).schema_id, body),
        valid,
    ):
        with contextlib.suppress(CodecError):
            codec.decode(bytes(data))
