"""``omnistream privacy erase``: find what the pipeline holds of a person and remove it, in an order that
leaves nothing behind whatever runs meanwhile.

Order of the writes (each acknowledged by every in-sync replica before the next):

1. the suppression list (``privacy-suppressions``): the person's identifier, profile and failed-event tokens.
   From here on, ingest drops their events, the journey their items, the sink their rows;
2. an erasure marker on ``identity-links``, then a replacement (or tombstone) of every link bundle that holds a
   link event of theirs: the identity writer rebuilds its graph without them at the marker, and every later
   replay finds the replacements in place of the originals (pipeline/privacy/linklog.py);
3. tombstones for their identifiers in ``identity-assignments``;
4. tombstones for their records in the journey's state topic, and an ``erase`` control per profile on
   ``resolved-events`` for the worker that holds the record in memory;
5. tombstones for their failed events (those whose sealed original carries one of their identifiers);
6. an audit record on ``privacy-audit``: request id, time, counts (no identifier, no profile id).

The warehouse is the sink's: it applies step 1 in its own transaction and logs the rows it removed
(``_erasure_log``), which :func:`warehouse_rows` reads from the snapshot.

Guarantees: a second request for the same person writes the same keys again and finds nothing left to remove.
Not guaranteed: erasure from the raw channel topics (until their retention), from topics the pipeline does not
compact (``customer-events``, ``resolved-events``, the output topics: until their retention), from exports and
backups; docs/privacy.md lists them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.domain.pii import Pseudonymiser
from pipeline.domain.quarantine import Quarantine
from pipeline.identity.replica import AssignmentReplica
from pipeline.privacy.linklog import (
    LINK_PREFIX,
    Message,
    marker,
    marker_tokens,
    replacement_headers,
    without_nodes,
)
from pipeline.privacy.person import Person, find_person
from pipeline.privacy.suppression import FAILED, NODE, PROFILE, Suppression
from pipeline.privacy.tokens import Tokens
from schemas.codec import AvroCodec

KeyValue = tuple[bytes, bytes | None]
Headers = list[tuple[str, bytes]]
#: (topic) -> every message of the topic as (offset, key, value, offset it replaces), from the earliest offset to
#: the current end (pipeline/privacy/linklog.py: ``Message``).
ReadTopic = Callable[[str], Iterator[Message]]
#: (topic, messages, headers per message or None) -> None once every message is acknowledged.
Produce = Callable[[str, list[KeyValue], list[Headers] | None], None]


@dataclass(frozen=True)
class Topics:
    """The full names of the topics erasure reads and writes."""

    suppressions: str
    links: str
    assignments: str
    merges: str
    journey_state: str
    resolved: str
    failed: str
    audit: str


@dataclass
class Plan:
    """What one request removes; ``already``: every token of the person is on the list (a repeated request)."""

    request: str
    person: Person
    already: bool
    links: list[tuple[bytes, bytes | None, int]] = field(default_factory=list)  # key, replacement, original
    old_links: int = 0  # link bundles with the person under a key shared with others (not replaceable)
    assignments: list[str] = field(default_factory=list)
    journey: list[str] = field(default_factory=list)
    failed: list[bytes] = field(default_factory=list)
    failed_by_reference: int = 0  # failed events whose original stayed in the input topic
    failed_unreadable: int = 0  # failed events sealed under another secret

    def counts(self) -> dict[str, int]:
        return {"profiles": len(self.person.profiles), "identifiers": len(self.person.nodes),
                "link_bundles": len(self.links), "assignments": len(self.assignments),
                "journey_records": len(self.journey), "failed_events": len(self.failed)}  # fmt: skip


def latest(messages: Iterator[Message]) -> dict[bytes, bytes | None]:
    """The latest value per key of a compacted topic (None: a tombstone)."""
    return {key: value for _offset, key, value, _original in messages if key is not None}


def latest_links(messages: Iterator[Message]) -> dict[bytes, tuple[bytes | None, int]]:
    """Per link-log key: its latest value and the offset of the original it stands for."""
    out: dict[bytes, tuple[bytes | None, int]] = {}
    for offset, key, value, original in messages:
        if key is not None:
            at = out[key][1] if key in out else offset if original is None else original
            out[key] = (value, at)
    return out


def plan(
    request: str, node: str | None, profile: str | None, topics: Topics, read: ReadTopic, codec: AvroCodec,
    tokens: Tokens, quarantine: Quarantine, pseudonymiser: Pseudonymiser,
) -> Plan:  # fmt: skip
    """Find the person and everything that names them (reads only)."""
    replica = AssignmentReplica("unused:0", topics.assignments)
    for _offset, key, value, _original in read(topics.assignments):
        if key is not None:
            replica.apply(key, value)
    merges = [(str(r["old_id"]), str(r["new_id"])) for _o, _k, v, _r in read(topics.merges) if v
              for r in [codec.decode(v).record]]  # fmt: skip
    person = find_person(node, profile, replica.assignments, replica.shared, merges, replica.history)
    listed = {key.decode() for key, value in latest(read(topics.suppressions)).items() if value}
    wanted = {tokens.node(n) for n in person.nodes} | {tokens.profile(p) for p in person.profiles}
    out = Plan(request, person, already=wanted <= listed)
    mine = set(person.nodes)

    def erased(nodes: list[str]) -> bool:
        return any(n in mine for n in nodes)

    for key, (value, original) in latest_links(read(topics.links)).items():
        if not value or marker_tokens(key, value) is not None:
            continue
        replace, new = without_nodes(codec, value, erased)
        if replace and key.startswith(LINK_PREFIX):
            out.links.append((key, new, original))
        elif replace:
            out.old_links += 1
    out.assignments = sorted(n for n in person.nodes if n in replica.history)
    state = latest(read(topics.journey_state))
    out.journey = sorted(p for p in person.profiles if state.get(p.encode()))
    for key, value in latest(read(topics.failed)).items():
        if not value:
            continue
        record = codec.decode(value).record
        if record.get("original_sealed"):
            try:
                sealed = quarantine.open(record["original_sealed"])
            except ValueError:  # sealed under another secret (before a rotation): it cannot name anybody now
                out.failed_unreadable += 1
                continue
            if erased(failed_nodes(codec, sealed, pseudonymiser)):
                out.failed.append(key)
        elif record.get("original_hmac") is not None:
            out.failed_by_reference += 1
    return out


def failed_nodes(codec: AvroCodec, original: bytes, pseudonymiser: Pseudonymiser) -> list[str]:
    """The identifiers a failed event's original carries, as nodes; [] when it does not decode."""
    from pipeline.domain.identity_rules import nodes_of

    try:
        record: Mapping[str, Any] = codec.decode(original).record
    except Exception:  # bytes that never were an event of ours: nothing to attribute
        return []
    envelope = record.get("envelope")
    ids = envelope.get("identifiers") if isinstance(envelope, Mapping) else None
    if not isinstance(ids, Mapping):  # a canonical event (a journey or identity failure): pseudonymised already
        return nodes_of(record)
    flat = {k: v for k, v in ids.items() if k not in ("email", "phone")}
    flat["email_hash"] = pseudonymiser.email(ids.get("email"))
    flat["phone_hash"] = pseudonymiser.phone(ids.get("phone"))
    return nodes_of(flat)


def execute(plan_: Plan, topics: Topics, produce: Produce, codec: AvroCodec, tokens: Tokens, now_ms: int) -> None:
    """Carry the plan out in the order of the module docstring."""
    person, request = plan_.person, plan_.request
    entries = [Suppression(tokens.node(n), request, NODE, now_ms) for n in person.nodes]
    entries += [Suppression(tokens.profile(p), request, PROFILE, now_ms) for p in person.profiles]
    entries += [Suppression(key.decode(), request, FAILED, now_ms) for key in plan_.failed]
    produce(topics.suppressions, [e.encode() for e in entries], None)
    links = [marker(request, [tokens.node(n) for n in person.nodes]), *((k, v) for k, v, _o in plan_.links)]
    produce(topics.links, links, [[], *(replacement_headers(o) for _k, _v, o in plan_.links)])
    produce(topics.assignments, [(n.encode(), None) for n in plan_.assignments], None)
    produce(topics.journey_state, [(p.encode(), None) for p in plan_.journey], None)
    controls: list[KeyValue] = [(p.encode(), erase_control(codec, p, request)) for p in person.profiles]
    produce(topics.resolved, controls, None)
    produce(topics.failed, [(key, None) for key in plan_.failed], None)
    audit = {"request": request, "at": now_ms, "already_erased": plan_.already, **plan_.counts(),
             "shared_identifiers_kept": len(person.shared)}  # fmt: skip
    produce(topics.audit, [(request.encode(), json.dumps(audit, separators=(",", ":")).encode())], None)


def erase_control(codec: AvroCodec, profile: str, request: str) -> bytes:
    """The ``journey-control`` record that makes the journey delete ``profile``'s record now."""
    record: dict[str, Any] = {"kind": "erase", "old_id": profile, "new_id": profile, "state_json": None,
                              "event_id": request, "order_time": 0, "event_time": 0, "aliases": []}  # fmt: skip
    return codec.encode("journey-control", record)


def warehouse_rows(snapshot: Path, request: str) -> dict[str, int] | None:
    """Rows the sink removed for ``request`` per table, as of the published snapshot; None: not applied yet."""
    import duckdb

    if not snapshot.is_file():
        return None
    with duckdb.connect(str(snapshot), read_only=True) as con:
        try:
            rows = con.execute("SELECT table_name, sum(rows_deleted) FROM _erasure_log WHERE request_id = ? "
                               "GROUP BY ALL", [request]).fetchall()  # fmt: skip
        except duckdb.CatalogException:  # a warehouse from before erasure existed: not applied yet
            return None
    return {str(t): int(n) for t, n in rows} if rows else None
