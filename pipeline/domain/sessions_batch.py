"""Batch reference sessionisation: the definition the streaming sessioniser is checked against.

Deliberately written differently from :mod:`pipeline.domain.sessions` (every pair of events within reach is
tested with :func:`~pipeline.domain.sessions_summary.linked`, no incremental state) while sharing the rule
functions, so a disagreement points at the incremental bookkeeping, not at two readings of the rule.

Input: each customer's canonical events (any order). Replays (same ``event_id`` and ``event_time``) count
once. Events are sorted by ``(event_time, event_id)``; a session is a maximal group of events connected by
:func:`linked` (contiguous in that order); a session spanning more than ``max_duration_ms`` is cut by
:func:`piece_starts` and all its pieces are flagged ``bot_suspect``. Guarantee: deterministic, independent of
input order. Not a model of lateness: feed it the events the stream accepted (not the ones it reported late)
when comparing with a stream that dropped late events.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.sessions_summary import (
    Fact,
    SessionPolicy,
    SessionSummary,
    SessionVersion,
    fact_of,
    linked,
    piece_starts,
    summary_values,
)


def batch_sessions(
    events_by_customer: Mapping[str, Iterable[CustomerEventRecord]], policy: SessionPolicy
) -> list[SessionSummary]:
    """All sessions of all customers, ordered by customer (mapping order) then start."""
    out: list[SessionSummary] = []
    for customer_id, events in events_by_customer.items():
        facts = sorted({(e["event_time"], e["event_id"]): fact_of(e) for e in events}.values())
        for group in linked_groups(facts, policy):
            starts = piece_starts([f.t for f in group], policy.max_duration_ms)
            bot = len(starts) > 1
            for a, b in zip(starts, [*starts[1:], len(group)], strict=True):
                out.append(SessionSummary(**summary_values(customer_id, group[a:b], bot)))
    return out


def linked_groups(facts: list[Fact], policy: SessionPolicy) -> list[list[Fact]]:
    """The sessions of sorted facts before the bot cap: split where no link crosses, i.e. between i and i+1 unless
    some b > i links to some a <= i."""
    n = len(facts)
    # earliest[b]: the smallest index a < b linked to b (b itself when none).
    earliest = list(range(n))
    for b in range(n):
        a = b - 1
        while a >= 0 and facts[b].t - facts[a].t <= policy.reach_ms:
            if linked(facts[a].t, facts[a].channel, facts[b].t, facts[b].channel, policy):
                earliest[b] = a
            a -= 1
    groups: list[list[Fact]] = []
    end = n
    lowest = n  # min(earliest[b] for b >= i + 1) while scanning i downwards
    for i in range(n - 1, -1, -1):
        if lowest > i:  # nothing after i links back to i or earlier: a session ends at i
            if i + 1 < end:
                groups.append(facts[i + 1 : end])
            end = i + 1
        lowest = min(lowest, earliest[i])
    if end > 0:
        groups.append(facts[:end])
    groups.reverse()
    return groups


def comparable(session: SessionSummary) -> tuple[Any, ...]:
    """Everything but session_id/version/status/merged_into, hashable: compare stream and batch as multisets."""
    values: list[Any] = []
    for name in SessionSummary.__dataclass_fields__:
        value = getattr(session, name)
        values.append(tuple(sorted(value.items())) if isinstance(value, dict) else value)
    return tuple(values)


def latest_versions(versions: Iterable[SessionVersion]) -> list[SessionVersion]:
    """What a consumer upserting by session id ends up with: the highest version per id, "merged" ones removed."""
    latest: dict[str, SessionVersion] = {}
    for v in versions:
        seen = latest.get(v.session_id)
        if seen is None or v.version > seen.version:
            latest[v.session_id] = v
    return [v for v in latest.values() if v.status != "merged"]


@dataclass(frozen=True, slots=True)
class SessionDiff:
    """Sessions found on one side only (as :func:`comparable` tuples, with multiplicity)."""

    only_stream: list[tuple[Any, ...]]
    only_batch: list[tuple[Any, ...]]

    @property
    def differing(self) -> int:
        """How many streamed sessions have no identical batch session (the evaluate figure)."""
        return len(self.only_stream)


def compare(stream: Iterable[SessionSummary], batch: Iterable[SessionSummary]) -> SessionDiff:
    """Multiset difference of stream sessions (e.g. :func:`latest_versions`) and batch sessions."""
    s, b = Counter(map(comparable, stream)), Counter(map(comparable, batch))
    return SessionDiff(list((s - b).elements()), list((b - s).elements()))
