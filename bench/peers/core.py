"""The job every peer runs, minus the framework: decode, key, session step, output record, counters and clock.

Per input message: decode the Confluent framing (``0x00`` + 4-byte big-endian schema id + schemaless Avro body)
with fastavro against the writer schema of that id, read through the latest version of its subject like the
project's ``AvroCodec`` (the parent hands over the channel subjects' schemas by id, from the project's file
registry, so the ids are the project's own); a message that does not decode, or is framed with any other id, is
counted as bad input. The customer key is the first
non-blank of ``customer_id``, ``loyalty_id``, ``device_id``, ``anonymous_id``, ``social_handle`` (the order the
simulator keys messages by, so inputs are already partitioned by it; raw e-mail and phone are never used as a
key); an event with none is counted as unkeyed. The session is per key ``(start_ms, end_ms, events)`` in event
time; a gap of more than 30 minutes after the session's end starts a new one. An event more than the gap
before the session's start belongs to a session already closed: it is counted as late, leaves the session as
it is, and still gets an update (flagged late). Each keyed event gives one update.

Only the standard library and fastavro: this module runs in the peers' virtualenv.
"""

from __future__ import annotations

import io
import json
import os
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader

GAP_MS = 30 * 60 * 1000
KEY_FIELDS = ("customer_id", "loyalty_id", "device_id", "anonymous_id", "social_handle")
HEADER = struct.Struct(">BI")

Session = tuple[int, int, int]  # start_ms, end_ms, events


class BadInput(ValueError):
    """A message that does not decode: framing, unknown schema id, or an Avro body that does not read."""


def unframe(data: bytes | None) -> int:
    """The schema id of a Confluent-framed message (raises BadInput for a missing or wrong header)."""
    if data is None or len(data) < HEADER.size:
        raise BadInput("shorter than the 5-byte header")
    magic, schema_id = HEADER.unpack_from(data)
    if magic != 0:
        raise BadInput(f"magic byte {magic}")
    return int(schema_id)


def strip_logical(node: Any) -> Any:
    """The schema with every ``logicalType`` removed, so timestamps decode as plain epoch milliseconds."""
    if isinstance(node, list):
        return [strip_logical(n) for n in node]
    if isinstance(node, dict):
        out = {k: strip_logical(v) if k in ("type", "items", "values") else v for k, v in node.items()}
        out.pop("logicalType", None)
        if "fields" in out:
            out["fields"] = [strip_logical(f) for f in out["fields"]]
        return out
    return node


class Decoder:
    """Schema id -> fastavro plan; ``schemas`` maps str(id) to ``{"writer": json, "reader": json | None}``."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self._plans: dict[int, tuple[Any, Any]] = {}
        for sid, entry in schemas.items():
            writer = parse_schema(strip_logical(json.loads(entry["writer"])))
            reader = parse_schema(strip_logical(json.loads(entry["reader"]))) if entry.get("reader") else None
            self._plans[int(sid)] = (writer, reader)

    def decode(self, data: bytes | None) -> dict[str, Any]:
        plan = self._plans.get(unframe(data))
        if plan is None:
            raise BadInput("unknown schema id")
        assert data is not None  # unframe refused None
        body = io.BytesIO(data)
        body.seek(HEADER.size)
        try:
            record = schemaless_reader(body, plan[0], plan[1])
        except Exception as exc:  # truncation and garbage surface as EOFError, IndexError, UnicodeError, ...
            raise BadInput(f"{type(exc).__name__}") from exc
        if body.tell() != len(data):
            raise BadInput("trailing bytes")
        if not isinstance(record, dict):
            raise BadInput("not a record")
        return record


def customer_key(record: Mapping[str, Any]) -> str | None:
    """The first non-blank identifier of KEY_FIELDS, stripped; None when the event has none."""
    ids = record["envelope"]["identifiers"]
    for name in KEY_FIELDS:
        value = ids.get(name)
        if value and (stripped := value.strip()):
            return str(stripped)
    return None


def advance(state: Sequence[int] | None, event_ms: int) -> tuple[Session, bool]:
    """The key's session after one more event, and whether the event was late (the session is then unchanged)."""
    if state is None:
        return (event_ms, event_ms, 1), False
    start, end, events = state
    if event_ms > end + GAP_MS:
        return (event_ms, event_ms, 1), False
    if event_ms < start - GAP_MS:
        return (start, end, events), True
    return (min(start, event_ms), max(end, event_ms), events + 1), False


def update(key: str, session: Sequence[int], late: bool) -> dict[str, Any]:
    """The output record of one event: the customer's current session."""
    return {"customer": key, "start_ms": session[0], "end_ms": session[1], "events": session[2], "late": late}


def encode(record: Mapping[str, Any]) -> bytes:
    """Output value: compact JSON (the jobs whose framework has no serializer of its own use this)."""
    return json.dumps(record, separators=(",", ":")).encode()


@dataclass
class Tally:
    """What a job did: inputs processed, and how many were bad, unkeyed, late, keyed differently from Kafka's key."""

    events: int = 0
    bad: int = 0
    unkeyed: int = 0
    late: int = 0
    rekeyed: int = 0
    updates: int = 0


def versions(*packages: str) -> list[str]:
    """``name version`` of installed distributions, for the report."""
    import importlib.metadata

    return [f"{name} {importlib.metadata.version(name)}" for name in packages]


def cpu_seconds() -> float:
    """CPU time of this process (every thread, native ones too) and of its waited-for children."""
    children = os.times()  # clock ticks only; process_time has nanosecond resolution
    return time.process_time() + children.children_user + children.children_system


class CoreJob:
    """The per-event work, with counters and the clock (started by the first message)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.decoder = Decoder(spec["schemas"])
        self.tally = Tally()
        self.first = 0.0
        self.cpu0 = 0.0

    def event(self, message_key: bytes | None, value: bytes | None) -> tuple[str, int] | None:
        """(customer key, event time) of one input message; None (counted) when it is bad or unkeyed."""
        tally = self.tally
        if not tally.events:
            self.first, self.cpu0 = time.perf_counter(), cpu_seconds()
        tally.events += 1
        try:
            record = self.decoder.decode(value)
        except BadInput:
            tally.bad += 1
            return None
        key = customer_key(record)
        if key is None:
            tally.unkeyed += 1
            return None
        if message_key is None or message_key.decode(errors="replace") != key:
            tally.rekeyed += 1
        return key, int(record["envelope"]["event_time"])

    def step(self, state: Sequence[int] | None, event_ms: int) -> tuple[Session, bool]:
        session, late = advance(state, event_ms)
        self.tally.late += late
        self.tally.updates += 1
        return session, late

    def result(self, expected: int, **extra: Any) -> dict[str, Any]:
        """RESULT.json: the clock stops now (call it once the output is flushed)."""
        seconds = max(time.perf_counter() - self.first, 1e-9) if self.first else 0.0
        cpu = cpu_seconds() - self.cpu0 if self.first else 0.0
        t = self.tally
        rates = {
            "events_per_s": t.events / seconds if seconds else None,
            "cpu_percent": 100.0 * cpu / seconds if seconds else None,
            "events_per_cpu_s": t.events / cpu if cpu else None,
        }
        return {**asdict(t), "expected": expected, "drained": t.events == expected, "seconds": seconds,
                "cpu_s": cpu, **rates, **extra}  # fmt: skip


class Ends:
    """Input end offsets taken at start (``"topic:partition" -> end``): which partitions are not done yet."""

    def __init__(self, ends: Mapping[str, int]) -> None:
        self.ends = {(tp.rsplit(":", 1)[0], int(tp.rsplit(":", 1)[1])): int(end) for tp, end in ends.items()}
        self.remaining = {tp for tp, end in self.ends.items() if end > 0}
        self.expected = sum(self.ends.values())

    def processed(self, topic: str, partition: int, offset: int) -> bool:
        """Record that ``offset`` of a partition is processed; True once every partition is."""
        if offset + 1 >= self.ends.get((topic, partition), 0):
            self.remaining.discard((topic, partition))
        return not self.remaining


def read_spec(path: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(Path(path).read_text())
    return spec


def write_result(path: str, result: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=2) + "\n")
