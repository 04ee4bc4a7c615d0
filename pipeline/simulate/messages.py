"""What the simulator emits: one :class:`SimMessage` per Kafka message, with its expected outcome.

The expected outcome per kind is a contract other tests rely on (ingest, failed events, end-to-end):

==================  =================  ==========================================================
kind                expected           what it is
==================  =================  ==========================================================
valid               valid              an ordinary event
late                valid              a valid event delivered hours after its event time
duplicate           duplicate          exact re-send of an earlier valid message (same bytes)
garbage             decode_error       random bytes, first byte != 0
truncated           decode_error       a valid frame with its Avro body cut in half
unknown_schema      unknown_schema     magic 0 + a schema id no registry knows + bytes
wrong_subject       schema_violation   a valid store event sent to the web topic
no_identifier       validation_error   every identifier null or a placeholder ("undefined", "0", "")
future_timestamp    validation_error   event_time 2-10 days after ``end_ms``
negative_amount     validation_error   a purchase with a negative total
unknown_currency    validation_error   a purchase in "XXY"
too_old             late_event         event_time ~2 years before ``end_ms``
oversized           size_violation     a social post with 100 KB of text
==================  =================  ==========================================================

The time-relative kinds assume the pipeline's clock is near ``end_ms`` (the CLI default: end = now).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.simulate.config import BAD_KINDS

VALID = "valid"
LATE = "late"
DUPLICATE = "duplicate"
KINDS: tuple[str, ...] = (VALID, LATE, DUPLICATE, *BAD_KINDS)

EXPECTED_OUTCOME: Mapping[str, str] = {
    VALID: "valid",
    LATE: "valid",
    DUPLICATE: "duplicate",
    "garbage": "decode_error",
    "truncated": "decode_error",
    "unknown_schema": "unknown_schema",
    "wrong_subject": "schema_violation",
    "no_identifier": "validation_error",
    "future_timestamp": "validation_error",
    "negative_amount": "validation_error",
    "unknown_currency": "validation_error",
    "too_old": "late_event",
    "oversized": "size_violation",
}
#: Every expected outcome: "valid", "duplicate" and the failed-event ``FailureType`` symbols.
OUTCOMES: tuple[str, ...] = tuple(dict.fromkeys(EXPECTED_OUTCOME.values()))

# Key priority: the most stable identifier first, so one person's events mostly share a partition.
_KEY_ORDER = ("customer_id", "loyalty_id", "device_id", "anonymous_id", "social_handle", "email", "phone")
_HEADER_BYTES = 5


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message to produce.

    Either ``record`` (encoded later with ``subject``/``version`` by :func:`encode_message`, then cut in
    half when ``truncate``) or ``raw`` (bytes that are sent as they are) is set. ``person_id`` and
    ``note`` are ground truth and never sent. ``event_id`` is the record's id (None for raw bytes).
    ``channel`` is the topic the message goes to, which for ``wrong_subject`` is not the subject's own.
    """

    channel: str
    key: bytes
    kind: str
    expected: str
    event_time_ms: int
    event_id: str | None
    person_id: str | None
    subject: str | None = None
    version: int | None = None
    record: Mapping[str, Any] | None = None
    raw: bytes | None = None
    truncate: bool = False
    note: Mapping[str, Any] | None = None


class Encoder(Protocol):
    """The codec's encode side (``schemas.codec.AvroCodec`` satisfies it)."""

    def encode(self, subject: str, record: Mapping[str, Any], version: int | None = None) -> bytes: ...


def encode_message(msg: SimMessage, encoder: Encoder) -> bytes:
    """The exact bytes to send for ``msg``. Deterministic when the encoder is (same message, same bytes)."""
    if msg.raw is not None:
        return msg.raw
    if msg.subject is None or msg.record is None:
        raise ValueError(f"message {msg.kind} {msg.event_id} has neither raw bytes nor a record")
    data = encoder.encode(msg.subject, msg.record, msg.version)
    if msg.truncate:
        # Every field of these schemas takes at least one byte, so any cut leaves the reader short.
        return data[: _HEADER_BYTES + (len(data) - _HEADER_BYTES) // 2]
    return data


def key_for(identifiers: Mapping[str, str | None], fallback: str) -> bytes:
    """Message key: the first real identifier in priority order, else ``fallback`` (UTF-8)."""
    for name in _KEY_ORDER:
        value = identifiers.get(name)
        if value:
            return value.encode()
    return fallback.encode()
