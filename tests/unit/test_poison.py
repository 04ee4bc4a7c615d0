"""Poison pills: whatever the bytes, a message ends as a canonical event or a typed failed event, and the rest
of its batch proceeds (ingest, without Kafka)."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.identifiers import identifier_problem
from pipeline.domain.ingest import MAX_EVENT_MINOR, MAX_QUANTITY, money_problem
from pipeline.domain.quarantine import Quarantine
from pipeline.steps.ingest import RawMessage
from schemas.codec import AvroCodec
from tests.unit.test_ingest_step import SECRET, make_step, web_event

INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    from schemas.registry import FileSchemaRegistry

    return AvroCodec(FileSchemaRegistry())


def failed_of(codec: AvroCodec, value: bytes) -> dict[str, Any]:
    return dict(codec.decode(value).record)


def test_a_null_value_is_a_decode_error_and_the_batch_goes_on(codec: AvroCodec) -> None:
    step = make_step(codec)
    good = codec.encode("web", web_event("e-1"))
    out = step.process_batch([RawMessage(b"k", None, 0, 0), RawMessage(b"k", good, 0, 1)])
    assert len(out.canonical) == 1 and len(out.failed) == 1
    failed = failed_of(codec, out.failed[0][1])
    assert (failed["failure_type"], failed["rule"]) == ("decode_error", "null_value")
    assert failed["original_sealed"] is None and failed["original_bytes"] is None
    assert out.ends[0][0] == 2


def test_schema_ids_beyond_a_signed_int_are_kept_in_the_failed_event(codec: AvroCodec) -> None:
    step = make_step(codec)
    batch = [RawMessage(None, struct.pack(">BI", 0, sid) + b"\x02xx", 0, i)
             for i, sid in enumerate((0x80000000, 0xFFFFFFFF))]  # fmt: skip
    out = step.process_batch(batch)
    ids = [failed_of(codec, v)["schema_id"] for _k, v in out.failed]
    assert ids == [0x80000000, 0xFFFFFFFF] and not out.canonical


def test_a_large_original_is_kept_by_reference_so_the_failed_event_fits_the_broker(codec: AvroCodec) -> None:
    step = make_step(codec)  # max_event_bytes 4096; the policy keeps originals up to 256 KiB sealed
    huge = b"\x00" + b"x" * 800_000
    out = step.process_batch([RawMessage(b"k", huge, 3, 7)])
    encoded = out.failed[0][1]
    failed = failed_of(codec, encoded)
    assert (failed["failure_type"], failed["rule"]) == ("size_violation", "too_large")
    assert failed["original_sealed"] is None and failed["original_bytes"] == len(huge)
    assert failed["original_hmac"] == Quarantine(SECRET).fingerprint(huge)
    assert (failed["source_topic"], failed["source_partition"], failed["source_offset"]) == ("web", 3, 7)
    assert len(encoded) < 2_000
    small = step.process_batch([RawMessage(b"k", b"\x00" + b"x" * 5000, 3, 8)])
    assert Quarantine(SECRET).open(failed_of(codec, small.failed[0][1])["original_sealed"])[:2] == b"\x00x"


def test_an_unexpected_exception_on_one_record_is_a_processing_error_for_that_record(codec: AvroCodec) -> None:
    step = make_step(codec)
    good = [codec.encode("web", web_event(f"e-{i}")) for i in range(3)]
    original = step._one

    def fragile(msg: RawMessage, now_ms: int) -> Any:
        if msg.offset == 1:
            raise RuntimeError("boom")
        return original(msg, now_ms)

    step._one = fragile  # type: ignore[method-assign]
    out = step.process_batch([RawMessage(b"k", v, 0, i) for i, v in enumerate(good)])
    assert len(out.canonical) == 2 and len(out.failed) == 1
    failed = failed_of(codec, out.failed[0][1])
    assert (failed["failure_type"], failed["rule"], failed["source_offset"]) == (
        "processing_error",
        "unexpected_exception",
        1,
    )
    assert "boom" in failed["reason"] and out.ends[0][0] == 3


def test_money_beyond_the_bounds_is_rejected_before_any_sum_can_overflow(codec: AvroCodec) -> None:
    step = make_step(codec)
    events = [
        {**web_event("big-amount"), "event_type": "purchase", "amount_minor": INT64_MAX, "order_id": "o-1"},
        {**web_event("big-quantity"), "quantity": MAX_QUANTITY + 1},
        {**web_event("big-line"), "unit_price_minor": MAX_EVENT_MINOR, "quantity": 2},
    ]
    out = step.process_batch([RawMessage(b"k", codec.encode("web", e), 0, i) for i, e in enumerate(events)])
    rules = [failed_of(codec, v)["rule"] for _k, v in out.failed]
    assert rules == ["amount_out_of_range", "invalid_quantity", "amount_out_of_range"] and not out.canonical


@given(
    amount=st.one_of(st.none(), st.integers(0, INT64_MAX)),
    price=st.one_of(st.none(), st.integers(0, INT64_MAX)),
    quantity=st.one_of(st.none(), st.integers(1, 2**31 - 1)),
    lines=st.lists(st.tuples(st.integers(0, INT64_MAX), st.integers(1, 2**31 - 1)), max_size=30),
)
def test_an_accepted_event_carries_bounded_money(amount: int | None, price: int | None, quantity: int | None,
                                                 lines: list[tuple[int, int]]) -> None:  # fmt: skip
    items = [{"unit_price_minor": p, "quantity": q} for p, q in lines]
    if money_problem(amount, price, quantity, items) is None:
        line_totals = [p * q for p, q in lines] + ([price * (quantity or 1)] if price is not None else [])
        assert max([amount or 0, sum(line_totals)]) <= MAX_EVENT_MINOR
        assert all(q <= MAX_QUANTITY for q in [quantity or 1, *(q for _p, q in lines)])
        # 92 million events of the maximum still fit in Avro's long
        assert 92_000_000 * MAX_EVENT_MINOR < INT64_MAX


JUNK = {
    "customer_id": ["+", "@", "--__"],
    "anonymous_id": ["abc", "+", "x" * 129],
    "device_id": ["1234567"],
    "email": ["a@", "@b", "a@b", "x" * 5000 + "@example.com", "a b@example.com"],
    "phone": ["1" * 40, "+" + "9" * 16],
    "social_handle": ["@+-", "h" * 200],
}


def test_junk_identifiers_are_named_and_real_ones_pass() -> None:
    for name, values in JUNK.items():
        for value in values:
            problem = identifier_problem({name: value})
            assert problem is not None and problem.startswith(f"{name}: "), (name, value)
            assert value not in problem  # the reason never carries the (possibly personal) value
    real = {"customer_id": "person-000042", "anonymous_id": "3f1c2a9e-0b7d-4c1e-9a55-0c1d2e3f4a5b",
            "device_id": "00ab34cd56ef7890", "email": "jane.doe+shop@mail.example.co.uk",
            "phone": "+1 (415) 555-0100 ext 12", "social_handle": "@jane_doe", "loyalty_id": "L7"}  # fmt: skip
    assert identifier_problem(real) is None
    assert identifier_problem({"email": "unknown", "device_id": "0000", "anonymous_id": " "}) is None  # placeholders


def test_an_event_with_a_junk_identifier_is_a_validation_error(codec: AvroCodec) -> None:
    step = make_step(codec)
    out = step.process_batch([RawMessage(b"k", codec.encode("web", web_event("e-1", email="a@")), 0, 0)])
    failed = failed_of(codec, out.failed[0][1])
    assert (failed["failure_type"], failed["rule"], failed["reason"]) == (
        "validation_error",
        "invalid_identifier",
        "email: not an e-mail address (local@domain.tld)",
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_any_bytes_end_as_exactly_one_outcome(data: bytes, null: bool) -> None:
    from schemas.registry import FileSchemaRegistry

    codec = AvroCodec(FileSchemaRegistry())
    step = make_step(codec)
    out = step.process_batch([RawMessage(None, None if null else data, 0, 0)])
    assert len(out.canonical) + len(out.failed) + out.duplicates == 1
    for _key, value in out.failed:
        assert codec.decode(value).subject == "failed-event"
