"""Event bundles on resolved-events: one Kafka message per partition per ingest micro-batch.

Why: Faust's per-message cost (fetch, event object, stream, ack) is paid per *Kafka message*, and it is the
largest cost of a hop that does little per event. Ingest already works in micro-batches; sending each batch's
resolved events that share a partition as one ``event-bundle`` message lets the journey agent pay Faust's
per-message cost once per bundle instead of once per customer event.

Guarantees: an entry keeps the key it would have as a message of its own, and a bundle goes to exactly the
partition each of its entries would (the bundle's key is its first entry's key, and entries are grouped by
the same partitioner), so the journey's co-partitioning with its table is unchanged. Entries keep their order
within a partition. ``expand`` returns single messages (controls, forwarded events, link events from the
identity writer) unchanged, so a topic may mix both. Not guaranteed: bundles are at most ``max_bytes`` of
entries; a single entry larger than that still travels alone in a bundle of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from schemas.codec import AvroCodec

BUNDLE_SUBJECT = "event-bundle"
#: Well under Kafka's default 1 MB message limit, and a few hundred events: bounded memory per message.
MAX_BUNDLE_BYTES = 256 * 1024
_ENTRY_OVERHEAD = 8  # Avro length prefixes of an entry's two byte strings, at most

KeyValue = tuple[bytes, bytes]


def bundle(
    codec: AvroCodec, items: Sequence[KeyValue], partition_of: Callable[[bytes], int], max_bytes: int = MAX_BUNDLE_BYTES
) -> list[KeyValue]:
    """(key, value) messages for ``items`` (key = resolved profile id): one or more bundles per partition."""
    by_partition: dict[int, list[KeyValue]] = {}
    for item in items:
        by_partition.setdefault(partition_of(item[0]), []).append(item)
    out: list[KeyValue] = []
    for entries in by_partition.values():
        start, size = 0, 0
        for i, (key, value) in enumerate(entries):
            n = len(key) + len(value) + _ENTRY_OVERHEAD
            if i > start and size + n > max_bytes:
                out.append(_encode(codec, entries[start:i]))
                start, size = i, 0
            size += n
        out.append(_encode(codec, entries[start:]))
    return out


def expand(codec: AvroCodec, key: bytes, value: bytes) -> Iterator[KeyValue]:
    """The (key, value) messages a consumed message stands for: a bundle's entries, or the message itself.

    Raises the codec's errors for a bundle that does not decode (a bug upstream, not customer data)."""
    if codec.subject_of(value) != BUNDLE_SUBJECT:
        yield key, value
        return
    for entry in codec.decode(value).record["entries"]:
        yield entry["key"], entry["value"]


def _encode(codec: AvroCodec, entries: Sequence[KeyValue]) -> KeyValue:
    record: dict[str, Any] = {"entries": [{"key": k, "value": v} for k, v in entries]}
    return entries[0][0], codec.encode(BUNDLE_SUBJECT, record)
