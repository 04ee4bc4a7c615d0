"""Event bundles on resolved-events: the entries of one producer batch that share a partition, with their
positions in event time, plus the progress marks (watermarks) of the producer's sources.

Why bundles: Faust's per-message cost (fetch, event object, stream, ack) is paid per *Kafka message*, and it is
the largest cost of a hop that does little per event; the journey agent pays it once per bundle.

Why marks travel *in* bundles: a mark says "this source will send nothing earlier than this order time". It must
reach every journey partition after the entries it covers, so it rides in the same message (or a later one on
the same partition). :func:`bundle` puts the marks into the last bundle of every partition and sends a
marks-only bundle to partitions without entries, keyed by :func:`partition_key` so it lands there.

Guarantees: an entry keeps the key it would have as a message of its own, and a bundle goes to exactly the
partition each of its entries would (grouped by the same partitioner); entries keep their order within a
partition; every partition in ``0 .. partitions-1`` gets the marks. :func:`read` returns single messages that
are not bundles as one entry without a position. Not guaranteed: bundles are at most ``max_bytes`` of entries;
a single larger entry travels alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kafka.partitioner.default import murmur2

from schemas.codec import AvroCodec

BUNDLE_SUBJECT = "event-bundle"
#: Well under Kafka's default 1 MB message limit, and a few hundred events: bounded memory per message.
MAX_BUNDLE_BYTES = 256 * 1024
_ENTRY_OVERHEAD = 40  # Avro length prefixes and the position fields of an entry, at most

KeyValue = tuple[bytes, bytes]


@dataclass(frozen=True, slots=True)
class Entry:
    """One keyed message inside a bundle and where it takes effect (``order_time`` 0: no position)."""

    key: bytes
    value: bytes
    order_time: int = 0
    event_time: int = 0
    event_id: str = ""


@dataclass(frozen=True, slots=True)
class Mark:
    """Progress of a source: nothing with an order time below ``mark`` will come from it any more."""

    source: str
    mark: int
    idle: bool = False


@lru_cache(maxsize=4096)
def partition_key(partition: int, partitions: int, kind: str = "partition") -> bytes:
    """A key that Kafka's default partitioner puts on ``partition`` (for records addressed to a partition)."""
    n = 0
    while True:
        key = f"~{kind}/{partition}/{n}".encode()
        if (murmur2(key) & 0x7FFFFFFF) % partitions == partition:
            return key
        n += 1


def bundle(
    codec: AvroCodec,
    entries: Sequence[Entry],
    partition_of: Callable[[bytes], int],
    partitions: int,
    marks: Sequence[Mark] = (),
    max_bytes: int = MAX_BUNDLE_BYTES,
) -> list[KeyValue]:
    """(key, value) messages for ``entries`` (one or more bundles per partition) carrying ``marks`` to every
    partition (none when ``marks`` is empty and a partition has no entries)."""
    by_partition: dict[int, list[Entry]] = {}
    for entry in entries:
        by_partition.setdefault(partition_of(entry.key), []).append(entry)
    out: list[KeyValue] = []
    for partition in range(partitions):
        part = by_partition.get(partition)
        if not part:
            if marks:
                out.append((partition_key(partition, partitions), encode_bundle(codec, (), marks)))
            continue
        start, size = 0, 0
        for i, entry in enumerate(part):
            n = len(entry.key) + len(entry.value) + len(entry.event_id) + _ENTRY_OVERHEAD
            if i > start and size + n > max_bytes:
                out.append((part[start].key, encode_bundle(codec, part[start:i], ())))
                start, size = i, 0
            size += n
        out.append((part[start].key, encode_bundle(codec, part[start:], marks)))
    return out


def read(codec: AvroCodec, key: bytes, value: bytes) -> tuple[list[Entry], list[Mark]]:
    """The entries and marks a consumed message stands for (a message that is no bundle: itself, no marks).

    Raises the codec's errors for a bundle that does not decode (a bug upstream, not customer data)."""
    if codec.subject_of(value) != BUNDLE_SUBJECT:
        return [Entry(key, value)], []
    record = codec.decode(value).record
    entries = [Entry(e["key"], e["value"], e["order_time"], e["event_time"], e["event_id"]) for e in record["entries"]]
    marks = [Mark(m["source"], m["mark"], m["idle"]) for m in record["progress"]]
    return entries, marks


def encode_bundle(codec: AvroCodec, entries: Sequence[Entry], marks: Sequence[Mark]) -> bytes:
    record: dict[str, Any] = {
        "entries": [
            {
                "key": e.key,
                "value": e.value,
                "order_time": e.order_time,
                "event_time": e.event_time,
                "event_id": e.event_id,
            }
            for e in entries
        ],
        "progress": [{"source": m.source, "mark": m.mark, "idle": m.idle} for m in marks],
    }
    return codec.encode(BUNDLE_SUBJECT, record)
