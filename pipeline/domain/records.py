"""Record shapes that cross the ingest boundary, and the typed rejection that replaces an exception.

``CustomerEventRecord`` mirrors ``schemas/avro/subjects/customer-event/v1.avsc`` field for field, so a
value built by :func:`pipeline.domain.ingest.canonicalise` can be handed to the Avro encoder as is.
``Rejection`` is data, not an exception: a bad event is an expected input, and the agent turns it into a
failed-event record (:func:`failed_event_record`) without unwinding the stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict


class LineItemRecord(TypedDict):
    """``omnistream.common.LineItem``: money in integer minor units of the event's currency."""

    product_id: str
    quantity: int
    unit_price_minor: int


class CustomerEventRecord(TypedDict):
    """``omnistream.canonical.CustomerEvent``: validated, normalised, pseudonymised.

    Timestamps are epoch milliseconds. ``email_hash``/``phone_hash`` are keyed HMAC-SHA256 hex digests;
    no raw e-mail, phone or free text is ever stored here.
    """

    event_id: str
    event_time: int
    ingested_at: int
    channel: str
    event_type: str
    anonymous_id: str | None
    device_id: str | None
    customer_id: str | None
    email_hash: str | None
    phone_hash: str | None
    loyalty_id: str | None
    social_handle: str | None
    consent_marketing: bool | None
    consent_analytics: bool | None
    campaign_id: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    product_id: str | None
    quantity: int | None
    unit_price_minor: int | None
    items: list[LineItemRecord]
    amount_minor: int | None
    currency: str | None
    order_id: str | None
    store_id: str | None
    visit_method: str | None
    page: str | None
    search_query: str | None
    platform: str | None
    rating: int | None
    sentiment: float | None
    source_topic: str
    source_partition: int
    source_offset: int
    schema_id: int


class FailedEventRecord(TypedDict):
    """``omnistream.failed.FailedEvent``: an input kept sealed (by reference when large), for inspection and
    replay."""

    failure_type: str
    rule: str
    reason: str
    event_id: str | None
    schema_id: int | None
    source_topic: str
    source_partition: int
    source_offset: int
    source_key_sealed: str | None
    original_sealed: str | None
    original_bytes: int | None
    original_hmac: str | None
    processor: str
    failed_at: int


class FailureType(StrEnum):
    """Why an input was not accepted; the symbols of the failed-event ``FailureType`` enum."""

    DECODE_ERROR = "decode_error"
    UNKNOWN_SCHEMA = "unknown_schema"
    SCHEMA_VIOLATION = "schema_violation"
    VALIDATION_ERROR = "validation_error"
    SIZE_VIOLATION = "size_violation"
    LATE_EVENT = "late_event"
    PROCESSING_ERROR = "processing_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A data error: which rule failed (machine-readable) and why (for humans).

    ``event_id``/``schema_id`` are set when the input was decoded far enough to know them.
    """

    failure_type: FailureType
    rule: str
    reason: str
    event_id: str | None = None
    schema_id: int | None = None


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a decoded record came from: Kafka coordinates and the writer schema id of its bytes."""

    topic: str
    partition: int
    offset: int
    schema_id: int


def failed_key(source_topic: str, partition: int, offset: int) -> bytes:
    """The Kafka key of a failed event: its input position. Unique per input message, so the compacted
    ``failed-events`` topic keeps one record per input and erasure can delete it with a tombstone."""
    return f"{source_topic}/{partition}/{offset}".encode()


def failed_event_record(
    rejection: Rejection,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    processor: str,
    failed_at_ms: int,
    *,
    seal: Callable[[bytes], str],
    keep_max_bytes: int | None = None,
    fingerprint: Callable[[bytes], str] | None = None,
) -> FailedEventRecord:
    """Build a failed-event record ready to Avro-encode with the latest ``failed-event`` version.

    The original key and value are kept byte-exact but sealed with ``seal`` (in production
    ``pipeline.domain.quarantine.Quarantine.seal``): a rejected input can still hold raw PII, so it never
    travels in clear. There is deliberately no unsealed default. A value longer than ``keep_max_bytes`` is kept
    by reference only (its source coordinates, length and ``fingerprint``), so that the failed event itself
    always fits the broker's message limit; a null value has nothing to keep.
    """
    by_reference = value is not None and _too_long(value, keep_max_bytes)
    return {
        "failure_type": str(rejection.failure_type),
        "rule": rejection.rule,
        "reason": rejection.reason,
        "event_id": rejection.event_id,
        "schema_id": rejection.schema_id,
        "source_topic": source_topic,
        "source_partition": partition,
        "source_offset": offset,
        "source_key_sealed": None if key is None or _too_long(key, keep_max_bytes) else seal(key),
        "original_sealed": None if value is None or by_reference else seal(value),
        "original_bytes": None if value is None else len(value),
        "original_hmac": None if value is None or fingerprint is None else fingerprint(value),
        "processor": processor,
        "failed_at": failed_at_ms,
    }


def _too_long(data: bytes, limit: int | None) -> bool:
    return limit is not None and len(data) > limit
