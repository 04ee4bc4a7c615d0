"""Recovering a failed event's original: sealed inside, or by reference checked against its hash."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pipeline.domain.quarantine import Quarantine
from pipeline.domain.records import FailureType, Rejection, failed_event_record
from pipeline.failed import Selection, original, summary_row

Q = Quarantine(b"test-secret")


def _failed(value: bytes | None, keep_max: int = 1000, rule: str = "too_large") -> dict[str, Any]:
    rejection = Rejection(FailureType.SIZE_VIOLATION, rule, "bigger than allowed")
    record: dict[str, Any] = failed_event_record(rejection, "web", 2, 41, b"key-1", value, "ingest/test",
                                                 1_780_000_000_000, seal=Q.seal, keep_max_bytes=keep_max,
                                                 fingerprint=Q.fingerprint)  # fmt: skip
    return record


def test_a_sealed_original_opens_with_the_secret() -> None:
    got = original(_failed(b"\x00payload"), Q, lambda *_: None)
    assert (got.key, got.value, got.problem, got.by_reference) == (b"key-1", b"\x00payload", None, False)


def test_a_reference_is_read_back_and_checked_against_its_hash() -> None:
    big = b"\x00" + b"x" * 5000
    record = _failed(big, keep_max=100)
    assert record["original_sealed"] is None and record["original_bytes"] == len(big)
    seen: list[tuple[str, int, int]] = []

    def topic(t: str, p: int, o: int) -> tuple[bytes | None, bytes | None] | None:
        seen.append((t, p, o))
        return b"key-1", big

    assert original(record, Q, topic).value == big and seen == [("web", 2, 41)]
    assert original(record, Q, lambda *_: None).problem == "kept by reference, and the input topic no longer has it"
    changed = original(record, Q, lambda *_: (b"key-1", b"\x00" + b"y" * 5000))
    assert changed.value is None and "not the original" in (changed.problem or "")


def test_a_null_value_has_nothing_to_replay() -> None:
    assert original(_failed(None), Q, lambda *_: None).problem == "no original: the input had no value"


def test_selection_and_the_listed_row_carry_no_personal_data() -> None:
    record = _failed(b"\x00payload with raw-address@example.com")
    record["failed_at"] = datetime.fromtimestamp(1_780_000_000, UTC)  # as fastavro decodes it
    assert Selection(types=("size_violation",), topics=("web",)).matches(record)
    assert not Selection(rules=("other",)).matches(record)
    assert not Selection(since_ms=1_780_000_000_001).matches(record)
    row = summary_row(record)
    assert row["input"] == "web:2:41" and row["original"] == "sealed" and row["failed_at"] == 1_780_000_000_000
    assert "example.com" not in repr(row)
