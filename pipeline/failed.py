"""Failed events for operators: select them, recover their originals, replay them to their source topic.

A failed event keeps its original either sealed inside (``original_sealed``, opened with the PII secret) or,
when it was larger than ``OMNISTREAM_FAILED_ORIGINAL_MAX_BYTES``, by reference: its source coordinates, length
and keyed hash (``original_hmac``). :func:`original` recovers the bytes either way; a reference is only good
while the input topic still retains the message and the bytes found there hash to the recorded value.

Guarantees: :func:`original` never returns bytes other than the original (a sealed token is authenticated; a
reference is checked against its hash). Not guaranteed: that a replayed original now succeeds (that depends
on the fix), or that it is processed once (replaying twice sends it twice; ingest's dedup window is per worker).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.domain.quarantine import Quarantine

#: (topic, partition, offset) -> (key, value) of that input message, or None when the topic no longer has it.
ReadInput = Callable[[str, int, int], tuple[bytes | None, bytes | None] | None]


@dataclass(frozen=True)
class Selection:
    """Which failed events a command works on (empty tuples: any); times in epoch milliseconds."""

    types: Sequence[str] = ()
    rules: Sequence[str] = ()
    topics: Sequence[str] = ()
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        failed_at = _ms(record["failed_at"])
        return (
            (not self.types or record["failure_type"] in self.types)
            and (not self.rules or record["rule"] in self.rules)
            and (not self.topics or record["source_topic"] in self.topics)
            and (self.since_ms is None or failed_at >= self.since_ms)
            and (self.until_ms is None or failed_at < self.until_ms)
        )


@dataclass(frozen=True)
class Original:
    """The recovered input (``key``, ``value``), or why there is none (``problem``)."""

    key: bytes | None = None
    value: bytes | None = None
    problem: str | None = None
    by_reference: bool = False


def original(record: Mapping[str, Any], quarantine: Quarantine, read_input: ReadInput) -> Original:
    """The original key and value of a failed event (see the module docstring)."""
    key = quarantine.open(record["source_key_sealed"]) if record.get("source_key_sealed") else None
    if record.get("original_sealed"):
        return Original(key, quarantine.open(record["original_sealed"]))
    if record.get("original_hmac") is None:
        return Original(problem="no original: the input had no value")
    found = read_input(record["source_topic"], record["source_partition"], record["source_offset"])
    if found is None or found[1] is None:
        return Original(problem="kept by reference, and the input topic no longer has it", by_reference=True)
    value = found[1]
    if len(value) != record.get("original_bytes") or quarantine.fingerprint(value) != record["original_hmac"]:
        return Original(problem="kept by reference, and the bytes at its offset are not the original",
                        by_reference=True)  # fmt: skip
    return Original(found[0] if key is None else key, value, by_reference=True)


def summary_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """What ``failed list`` shows of a failed event: where it came from, why it failed, no personal data."""
    return {
        "input": f"{record['source_topic']}:{record['source_partition']}:{record['source_offset']}",
        "failure_type": record["failure_type"],
        "rule": record["rule"],
        "reason": record["reason"],
        "event_id": record.get("event_id") or "",
        "failed_at": _ms(record["failed_at"]),
        "original": "sealed" if record.get("original_sealed") else
                    f"reference ({record['original_bytes']} B)" if record.get("original_hmac") else "none",
    }  # fmt: skip


def _ms(value: Any) -> int:
    """Epoch milliseconds of a decoded ``timestamp-millis`` (fastavro gives a datetime) or an int."""
    return int(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)
