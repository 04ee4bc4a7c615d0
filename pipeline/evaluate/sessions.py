"""Session evaluation: streamed sessions (latest version per id) against a batch recomputation over the same
canonical events with the same gap rule.

Each event is attributed as the stream attributed it: to the profile it was first resolved to, followed through
every identity merge since (``final_attribution``). That isolates what this checks — sessionisation, out-of-order
placement and the folding of merged profiles — from identity quality, which ``evaluate identity`` scores.

A merge hands over only what can still change: a session already *final* when one of its profiles was merged
(its last event plus the store gap lies more than the allowed lateness before the merge's order time) keeps its
own events and is not joined with the other profile's sessions (docs/time.md, "merges long after a session").
``kept_apart`` finds those sessions; the recomputation sessionises their events on their own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.sessions_batch import SessionDiff, batch_sessions, compare, latest_versions, linked_groups
from pipeline.domain.sessions_summary import SessionPolicy, SessionSummary, SessionVersion, fact_of
from pipeline.evaluate.reference import order_positions, unique_events

_TUPLES = ("channels", "products_viewed", "products_carted", "products_bought", "store_ids", "campaign_ids")


def version_from_record(record: Mapping[str, Any]) -> SessionVersion:
    """A decoded ``session`` Avro record as the domain's SessionVersion."""
    values = dict(record)
    for name in _TUPLES:
        values[name] = tuple(values[name])
    values["counts_by_type"] = dict(values["counts_by_type"])
    return SessionVersion(**values)


def follow(successor: Mapping[str, str], profile: str) -> str:
    """A profile id followed through the merge chain (old -> new) to its survivor."""
    seen = {profile}
    while profile in successor and successor[profile] not in seen:
        profile = successor[profile]
        seen.add(profile)
    return profile


def final_attribution(first_keys: Mapping[str, str], merges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """event id -> profile: the first resolved profile followed through the merge chain (old -> new)."""
    successor = dict(merges)
    return {event_id: follow(successor, profile) for event_id, profile in first_keys.items()}


class Merge(NamedTuple):
    """An identity merge as the journey applies it: ``old_id`` handed over to ``new_id`` at order time ``at``
    (its link event's); ``event_time`` and ``event_id`` order merges of one instant, as their controls' positions
    do."""

    at: int
    event_time: int
    event_id: str
    old_id: str
    new_id: str


def kept_apart(
    first_keys: Mapping[str, str],
    merges: Iterable[Merge],
    events: Iterable[CustomerEventRecord],
    order_times: Mapping[str, int],
    policy: SessionPolicy,
) -> dict[str, int]:
    """event id -> a number shared by the events of one session that a merge did not hand over because it was
    final by then; events not listed were carried through every merge.

    At a merge at order time M, the events each of the two profiles holds with an order time before M are grouped
    into sessions (gap rule, no bot cap); a group whose last event plus ``reach_ms`` is before ``M - grace_ms`` is
    final, exactly when the journey's sweep at M drops it. Its events stay apart from then on; the others move to
    the survivor. ``order_times``: event id -> order time (the event time when missing). The first merge of an
    absorbed id counts. Not modelled: the leading pieces of a bot-cap run dropped while the run goes on (the
    stream does not link them at a merge either, but the recomputation cuts the run as a whole)."""
    unique = {e["event_id"]: e for e in events}
    held: dict[str, set[str]] = defaultdict(set)  # profile -> event ids it holds, not kept apart
    for event_id, profile in first_keys.items():
        if event_id in unique:
            held[profile].add(event_id)
    apart: dict[str, int] = {}
    kept = 0
    done: set[str] = set()
    for m in sorted(merges):
        if m.old_id in done or m.old_id == m.new_id:
            continue
        done.add(m.old_id)
        floor = m.at - policy.grace_ms
        for profile in (m.old_id, m.new_id):
            before = [unique[i] for i in held.get(profile, ()) if order_times.get(i, unique[i]["event_time"]) < m.at]
            facts = sorted({(e["event_time"], e["event_id"]): fact_of(e) for e in before}.values())
            for group in linked_groups(facts, policy):
                if group[-1].t + policy.reach_ms < floor:
                    kept += 1
                    for f in group:
                        apart[f.event_id] = kept
                        held[profile].discard(f.event_id)
        held[m.new_id] |= held.pop(m.old_id, set())
    return apart


@dataclass(frozen=True, slots=True)
class Attribution:
    """What the recomputation needs: event id -> final profile, old -> new profile, and ``kept_apart``."""

    final: dict[str, str]
    merges: dict[str, str]
    apart: dict[str, int]


def attribute(
    first_keys: Mapping[str, str],
    merge_records: Iterable[Mapping[str, Any]],
    events: Iterable[CustomerEventRecord],
    policy: SessionPolicy,
) -> Attribution:
    """The attribution of ``events`` from the first profile each was resolved to (resolved-events) and the
    identity-merges records (old_id, new_id, event_id, event_time), in the stream's order times (docs/time.md)."""
    unique = unique_events(events)
    positions = order_positions(unique)
    merges: list[Merge] = []
    successor: dict[str, str] = {}
    for r in merge_records:
        pos = positions.get(r["event_id"])
        at = pos.order_time if pos else r["event_time"]
        merges.append(Merge(at, r["event_time"], r["event_id"], r["old_id"], r["new_id"]))
    for m in sorted(merges):
        successor.setdefault(m.old_id, m.new_id)
    order_times = {i: p.order_time for i, p in positions.items()}
    return Attribution(final_attribution(first_keys, successor.items()), successor,
                       kept_apart(first_keys, merges, unique, order_times, policy))  # fmt: skip


def evaluate_sessions(
    session_records: Iterable[Mapping[str, Any]],
    events: Iterable[CustomerEventRecord],
    attribution: Mapping[str, str],
    policy: SessionPolicy,
    merges: Mapping[str, str] | None = None,
    apart: Mapping[str, int] | None = None,
) -> tuple[SessionDiff, int, int]:
    """(difference, streamed sessions, batch sessions). Streamed sessions' customer ids are followed through
    ``merges`` (old -> new), as the warehouse re-points them. Events are deduplicated by event_id first; events
    the stream never attributed (still in flight) are left out of the batch side too. Events in ``apart``
    (:func:`kept_apart`) are sessionised with the others of their number only."""
    successor = merges or {}
    kept = apart or {}
    records = [{**r, "customer_id": follow(successor, r["customer_id"])} for r in session_records]
    stream = latest_versions(version_from_record(r) for r in records)
    unique: dict[str, CustomerEventRecord] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    by_part: dict[tuple[str, int | None], list[CustomerEventRecord]] = {}
    for event in unique.values():
        profile = attribution.get(event["event_id"])
        if profile is not None:
            by_part.setdefault((profile, kept.get(event["event_id"])), []).append(event)
    batch: list[SessionSummary] = []
    for (profile, _part), part_events in by_part.items():
        batch.extend(batch_sessions({profile: part_events}, policy))
    return compare(stream, batch), len(stream), len(batch)
