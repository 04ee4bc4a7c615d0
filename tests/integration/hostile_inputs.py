"""Hostile channel messages, by kind: every way we know bytes can be wrong, plus fuzzed records of the contracts.

Each kind builds a message (key, value) for a channel topic from a random generator; values are unique (a fresh
event id where a record is involved) so that no two inputs are duplicates of each other.
"""

from __future__ import annotations

import random
import struct
import uuid
from collections.abc import Callable
from typing import Any

from schemas.codec import AvroCodec

DAY_MS = 86_400_000
Message = tuple[bytes | None, bytes | None]
Kind = Callable[[random.Random, AvroCodec, int], Message]


def web_record(rng: random.Random, now_ms: int, **fields: Any) -> dict[str, Any]:
    ids = {"anonymous_id": str(uuid.UUID(int=rng.getrandbits(128))), **fields.pop("ids", {})}
    envelope = {"event_id": str(uuid.UUID(int=rng.getrandbits(128))), "event_time": now_ms - rng.randrange(DAY_MS),
                "identifiers": ids, **fields.pop("envelope", {})}  # fmt: skip
    return {"envelope": envelope, "event_type": "add_to_cart", "product_id": f"P-{rng.randrange(1000)}",
            "quantity": 1, "unit_price_minor": 1999, "currency": "EUR", **fields}  # fmt: skip


def _valid(rng: random.Random, codec: AvroCodec, now: int) -> Message:
    return b"k", codec.encode("web", web_record(rng, now))


def _record(**fields: Any) -> Kind:
    return lambda rng, codec, now: (b"k", codec.encode("web", web_record(rng, now, **dict(fields))))


def _framed(schema_id: int) -> Kind:
    return lambda rng, codec, now: (None, struct.pack(">BI", 0, schema_id) + rng.randbytes(rng.randrange(0, 60)))


def _bit_flip(rng: random.Random, codec: AvroCodec, now: int) -> Message:
    value = bytearray(codec.encode("web", web_record(rng, now)))
    value[rng.randrange(len(value))] ^= 1 << rng.randrange(8)
    return b"k", bytes(value)


def _truncated(rng: random.Random, codec: AvroCodec, now: int) -> Message:
    value = codec.encode("web", web_record(rng, now))
    return b"k", value[: rng.randrange(1, len(value))]


def _trailing(rng: random.Random, codec: AvroCodec, now: int) -> Message:
    return b"k", codec.encode("web", web_record(rng, now)) + rng.randbytes(rng.randrange(1, 9))


def _other_subject(rng: random.Random, codec: AvroCodec, now: int) -> Message:
    signal = {
        "signal_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "customer_id": "c:1",
        "signal_type": "x",
        "event_time": now,
        "emitted_at": now,
        "reason": "x",
        "evidence_event_ids": [],
        "holdout": False,
    }
    return b"k", codec.encode("signal", signal)  # a valid record of another contract on a channel topic


KINDS: dict[str, Kind] = {
    "valid": _valid,
    "null_value": lambda rng, codec, now: (b"k", None),
    "empty": lambda rng, codec, now: (None, b""),
    "short_header": lambda rng, codec, now: (None, rng.randbytes(rng.randrange(1, 5))),
    "bad_magic": lambda rng, codec, now: (None, bytes([rng.randrange(1, 256)]) + rng.randbytes(20)),
    "schema_id_2^31": _framed(0x80000000),
    "schema_id_2^32-1": _framed(0xFFFFFFFF),
    "schema_id_unknown": lambda rng, codec, now: _framed(rng.randrange(1, 2**32))(rng, codec, now),
    "random_bytes": lambda rng, codec, now: (rng.randbytes(8), rng.randbytes(rng.randrange(1, 400))),
    "bit_flip": _bit_flip,
    "truncated": _truncated,
    "trailing_bytes": _trailing,
    "other_subject": _other_subject,
    "oversize_800k": lambda rng, codec, now: (b"k", b"\x00" + rng.randbytes(800_000)),
    "oversize_70k": lambda rng, codec, now: (b"k", b"\x00" + rng.randbytes(70_000)),
    "amount_int64_max": _record(event_type="purchase", amount_minor=2**63 - 1, order_id="o-1", product_id=None),
    "quantity_int32_max": _record(quantity=2**31 - 1),
    "negative_price": _record(unit_price_minor=-1),
    "junk_customer_id": _record(ids={"customer_id": "+"}),
    "junk_email_at": _record(ids={"email": "@"}),
    "junk_email_a_at": _record(ids={"email": "a@"}),
    "junk_email_at_b": _record(ids={"email": "@b"}),
    "phone_40_digits": _record(ids={"phone": "1" * 40}),
    "email_5000_chars": _record(ids={"email": "x" * 5000 + "@example.com"}),
    "short_cookie": _record(ids={"anonymous_id": "abc"}),
    "placeholders_only": _record(ids={"anonymous_id": "unknown", "email": "n/a"}),
    "empty_event_id": _record(envelope={"event_id": " "}),
    "future": lambda rng, codec, now: (
        b"k",
        codec.encode("web", web_record(rng, now, envelope={"event_time": now + 3 * DAY_MS})),
    ),
    "ancient": lambda rng, codec, now: (
        b"k",
        codec.encode("web", web_record(rng, now, envelope={"event_time": now - 500 * DAY_MS})),
    ),
    "unknown_currency": _record(currency="ZZZ"),
    "missing_currency": _record(currency=None),
}
