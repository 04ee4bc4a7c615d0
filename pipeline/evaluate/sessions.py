"""Session evaluation: streamed sessions (latest version per id) against a batch recomputation over the same
canonical events with the same gap rule.

Each event is attributed as the stream attributed it: to the profile it was first resolved to, followed through
every identity merge since (``final_attribution``). That isolates what this checks — sessionisation, out-of-order
placement and the folding of merged profiles — from identity quality, which ``evaluate identity`` scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.sessions_batch import SessionDiff, batch_sessions, compare, latest_versions
from pipeline.domain.sessions_summary import SessionPolicy, SessionVersion

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


def evaluate_sessions(
    session_records: Iterable[Mapping[str, Any]],
    events: Iterable[CustomerEventRecord],
    attribution: Mapping[str, str],
    policy: SessionPolicy,
    merges: Mapping[str, str] | None = None,
) -> tuple[SessionDiff, int, int]:
    """(difference, streamed sessions, batch sessions). Streamed sessions' customer ids are followed through
    ``merges`` (old -> new), as the warehouse re-points them. Events are deduplicated by event_id first; events
    the stream never attributed (still in flight) are left out of the batch side too."""
    successor = merges or {}
    records = [{**r, "customer_id": follow(successor, r["customer_id"])} for r in session_records]
    stream = latest_versions(version_from_record(r) for r in records)
    unique: dict[str, CustomerEventRecord] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    by_customer: dict[str, list[CustomerEventRecord]] = {}
    for event in unique.values():
        profile = attribution.get(event["event_id"])
        if profile is not None:
            by_customer.setdefault(profile, []).append(event)
    batch = batch_sessions(by_customer, policy)
    return compare(stream, batch), len(stream), len(batch)
