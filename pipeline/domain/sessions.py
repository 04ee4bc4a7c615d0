"""Incremental, event-time sessioniser: one state per resolved customer, fed once per micro-batch.

Pure: no IO, no clock, inputs never mutated. Time is the customer's event-time clock (``clock_ms``: the order
time of the items being applied, see :mod:`pipeline.domain.eventtime`), passed in. The rules (gap, store gap,
bot cap, summary) are in :mod:`pipeline.domain.sessions_summary`, shared with the batch reference.

Guarantees:

* Order-insensitive within the grace: if every event is placed no later than ``grace_ms`` (the allowed
  lateness) after its event time on the customer's clock, the latest non-merged version of every session,
  after a final sweep, equals :func:`pipeline.domain.sessions_batch.batch_sessions` over the same events,
  whatever the order and grouping of the calls (property-tested).
* Nothing is silently lost: an event is placed, ignored as a replay (same ``event_id`` and ``event_time`` as
  a retained event) or returned in ``late``.
* At most one version per session id per call; versions of one id strictly increase and are a function of
  the clock (:func:`~pipeline.domain.eventtime.version_at`), so the same calls give the same versions. A
  merged-away session gets one last version with ``status="merged"`` and ``merged_into``; a survivor keeps
  the id of the session that was emitted first / started earlier. A session is closed by :func:`sweep` once
  the clock passes the furthest point an on-time event could still link to it (:func:`next_due` says when).

Not guaranteed:

* "closed" is not final: a late event inside the grace reopens a session (new version, status "open").
* Session ids depend on arrival (first arriving event), only contents are order-insensitive.
* An event older than the grace that falls inside a retained session is placed, but cannot merge with a
  session already dropped from state; events beyond the grace elsewhere are ``late`` (caller: failed events).
* An event older than ``clock - grace`` is late unless it falls inside a retained session.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256

from pipeline.domain.eventtime import version_at
from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.sessions_state import CustomerSessions, PieceMeta, Run
from pipeline.domain.sessions_summary import (
    CLOSED,
    MERGED,
    OPEN,
    Fact,
    SessionPolicy,
    SessionVersion,
    fact_of,
    piece_starts,
    reach,
    summary_values,
)

__all__ = [
    "CLOSED", "MERGED", "OPEN", "SessionsUpdate", "add_events", "merge_states", "new_session_id", "next_due", "sweep",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class SessionsUpdate:
    """New state to persist, session versions to publish, and late events with the reason (for failed events)."""

    state: CustomerSessions
    versions: list[SessionVersion]
    late: list[tuple[CustomerEventRecord, str]]


def new_session_id(customer_id: str, event_id: str) -> str:
    """``s:`` + 16 hex of sha256(customer id, first arriving event id): deterministic on replay."""
    return "s:" + sha256(f"{customer_id}\x1f{event_id}".encode()).hexdigest()[:16]


def _later(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _seniority(run: Run) -> tuple[bool, bool, int, str]:
    # The survivor of a merge: a run with dropped pieces (its piece numbering must continue), then one already
    # published (its id is known downstream), then the earliest start, then the smaller id.
    return run.carry is None, not run.pieces, run.first, run.sid


def add_events(
    state: CustomerSessions | None,
    profile_id: str,
    events: Sequence[CustomerEventRecord],
    clock_ms: int,
    policy: SessionPolicy,
) -> SessionsUpdate:
    """Place events of one customer (any order) at event-time ``clock_ms`` and emit the changed session versions.

    Events are placed in (event_time, event_id) order. An event older than ``clock_ms - grace`` is late
    unless it falls inside the span of a retained session.
    """
    if state is None:
        state = CustomerSessions(profile_id)
    elif state.customer_id != profile_id:
        raise ValueError(f"state of {state.customer_id!r} fed events of {profile_id!r}")
    runs = list(state.runs)
    max_t = state.max_event_time
    floor = max(clock_ms, state.watermark_ms or clock_ms) - policy.grace_ms
    late: list[tuple[CustomerEventRecord, str]] = []
    touched: set[str] = set()
    absorbed: list[Run] = []
    for event in sorted(events, key=lambda e: (e["event_time"], e["event_id"])):
        t, event_id = event["event_time"], event["event_id"]
        i = bisect.bisect_right(runs, t, key=lambda r: r.first)
        if i and t <= runs[i - 1].last:
            facts = runs[i - 1].facts
            pos = bisect.bisect_left(facts, (t, event_id))
            if pos < len(facts) and facts[pos].t == t and facts[pos].event_id == event_id:
                continue  # replay of a retained event
        elif t < floor:
            late.append((event, f"event_time {t} is {floor - t} ms older than the grace horizon {floor} "
                                f"(grace {policy.grace_ms} ms) and outside every retained session"))  # fmt: skip
            continue
        fact = fact_of(event)
        max_t = t if max_t is None or t > max_t else max_t
        lo, hi = i, i
        # Runs linked to the event form one contiguous block around it (see sessions_summary), so stop at the
        # first run on each side that is not linked.
        while lo > 0 and runs[lo - 1].links(t, fact.channel, policy):
            lo -= 1
        while hi < len(runs) and runs[hi].links(t, fact.channel, policy):
            hi += 1
        if lo == hi:
            run = Run(new_session_id(profile_id, event_id), (fact,))
        else:
            block = runs[lo:hi]
            survivor = min(block, key=_seniority) if len(block) > 1 else block[0]
            merged: tuple[Fact, ...] = tuple(f for r in block for f in r.facts) if len(block) > 1 else block[0].facts
            pos = bisect.bisect_left(merged, fact)
            # Direct construction, not dataclasses.replace: this is the per-event hot path (replace is ~5x slower).
            run = Run(
                survivor.sid, (*merged[:pos], fact, *merged[pos:]), survivor.pieces, survivor.piece0, survivor.carry
            )
            for r in block:
                if r is not survivor:
                    touched.discard(r.sid)
                    if r.pieces:
                        absorbed.append(r)
        runs[lo:hi] = [run]
        touched.add(run.sid)
    if not touched:
        return SessionsUpdate(state, [], late)
    versions: list[SessionVersion] = []
    for k, run in enumerate(runs):
        if run.sid in touched:
            runs[k], emitted = _refresh(run, profile_id, policy, clock_ms, force=False)
            versions.extend(emitted)
    for run in absorbed:
        versions.extend(_tombstones(run, runs, profile_id, policy, clock_ms))
    new_state = CustomerSessions(state.customer_id, tuple(runs), max_t, state.watermark_ms)
    return SessionsUpdate(new_state, versions, late)


def _bounds(run: Run, policy: SessionPolicy) -> list[int]:
    """Fact indices where each bot-cap piece starts, plus the end."""
    return [*piece_starts([f.t for f in run.facts], policy.max_duration_ms), len(run.facts)]


def _refresh(
    run: Run, customer_id: str, policy: SessionPolicy, clock_ms: int, *, force: bool
) -> tuple[Run, list[SessionVersion]]:
    """Emit a version for every piece whose events changed (or all pieces when ``force``)."""
    bounds = _bounds(run, policy)
    facts, n_pieces = run.facts, len(bounds) - 1
    bot = run.piece0 > 0 or n_pieces > 1
    metas: list[PieceMeta] = []
    out: list[SessionVersion] = []
    for j in range(n_pieces):
        a, b = bounds[j], bounds[j + 1]
        old = run.pieces[j] if j < len(run.pieces) else None
        same = old is not None and old.start == facts[a].t and old.size == b - a and old.bot == bot
        if old is not None and same and not force:
            metas.append(old)
            continue
        status = old.status if old is not None and same else OPEN
        meta = PieceMeta(version_at(clock_ms, old.version if old else 0), status, facts[a].t, b - a, bot)
        out.append(_version(run.piece_id(run.piece0 + j), customer_id, facts[a:b], meta, None))
        metas.append(meta)
    return Run(run.sid, run.facts, tuple(metas), run.piece0, run.carry), out


def _version(
    session_id: str, customer_id: str, facts: Sequence[Fact], meta: PieceMeta, merged_into: str | None
) -> SessionVersion:
    values = summary_values(customer_id, facts, meta.bot)
    return SessionVersion(**values, session_id=session_id, status=meta.status, merged_into=merged_into,
                          version=meta.version)  # fmt: skip


def _tombstones(
    gone: Run, runs: Sequence[Run], customer_id: str, policy: SessionPolicy, clock_ms: int
) -> list[SessionVersion]:
    """Final "merged" versions for every published piece of a run that was merged into another run."""
    out: list[SessionVersion] = []
    for j, meta in enumerate(gone.pieces):
        # The piece's old events, for a well-formed record; downstream only needs id, status and merged_into.
        upto = gone.pieces[j + 1].start if j + 1 < len(gone.pieces) else None
        facts = [f for f in gone.facts if f.t >= meta.start and (upto is None or f.t < upto)] or list(gone.facts)
        host = runs[max(0, bisect.bisect_right(runs, meta.start, key=lambda r: r.first) - 1)]
        starts = [host.facts[k].t for k in _bounds(host, policy)[:-1]]
        into = host.piece_id(host.piece0 + max(0, bisect.bisect_right(starts, meta.start) - 1))
        dead = meta._replace(version=version_at(clock_ms, meta.version), status=MERGED)
        out.append(_version(gone.piece_id(gone.piece0 + j), customer_id, facts, dead, into))
    return out


def sweep(state: CustomerSessions, clock_ms: int, policy: SessionPolicy) -> SessionsUpdate:
    """Close what is over at event-time ``clock_ms``, then drop from state what can no longer change.

    A piece's *limit* is its last event + ``store_gap_ms`` (the furthest an on-time event could still link;
    the brief's "end + gap" would close sessions a store visit can still extend) or, for a piece the bot cap
    ended, its start + ``max_duration_ms``. An open piece is closed (version with ``status="closed"``) once
    ``limit < clock_ms``; a piece is *final* once ``limit < clock_ms - grace`` (no accepted event can reach it
    any more) and final pieces are dropped from state.
    """
    original = state
    watermark = clock_ms if state.watermark_ms is None else max(state.watermark_ms, clock_ms)
    state = dataclasses.replace(state, watermark_ms=watermark)
    floor = watermark - policy.grace_ms
    runs: list[Run] = []
    versions: list[SessionVersion] = []
    for run in state.runs:
        bounds, facts = _bounds(run, policy), run.facts
        metas = list(run.pieces)
        n_final = 0
        for j in range(len(bounds) - 1):
            limit = _limit(run, bounds, j, policy)
            if limit < floor and n_final == j:  # only a leading stretch of final pieces can be dropped
                n_final += 1
            if metas[j].status == OPEN and limit < watermark:
                metas[j] = metas[j]._replace(version=version_at(watermark, metas[j].version), status=CLOSED)
                a, b = bounds[j], bounds[j + 1]
                versions.append(_version(run.piece_id(run.piece0 + j), state.customer_id, facts[a:b], metas[j], None))
        if n_final == len(metas):
            continue  # every piece final (and closed just above): forget the run
        if n_final:
            cut = bounds[n_final]
            frontier = max(f.t + reach(f.channel, policy) for f in facts[:cut])
            carry = (max(frontier, run.carry[0]), facts[cut - 1].t) if run.carry else (frontier, facts[cut - 1].t)
            run = Run(run.sid, facts[cut:], tuple(metas[n_final:]), run.piece0 + n_final, carry)
        elif metas != list(run.pieces):
            run = Run(run.sid, facts, tuple(metas), run.piece0, run.carry)
        runs.append(run)
    unchanged = len(runs) == len(original.runs) and all(a is b for a, b in zip(runs, original.runs, strict=True))
    if unchanged and watermark == original.watermark_ms:
        return SessionsUpdate(original, [], [])  # the caller can skip the state write
    return SessionsUpdate(dataclasses.replace(state, runs=tuple(runs)), versions, [])


def _limit(run: Run, bounds: Sequence[int], j: int, policy: SessionPolicy) -> int:
    """The last event time an on-time event could still link piece ``j`` at (see :func:`sweep`)."""
    facts = run.facts
    if j == len(bounds) - 2:
        return facts[bounds[j + 1] - 1].t + policy.reach_ms
    return facts[bounds[j]].t + policy.max_duration_ms


def next_due(state: CustomerSessions, policy: SessionPolicy) -> int | None:
    """The earliest clock at which :func:`sweep` would change ``state`` (close or drop a piece), or None.

    Lets the caller keep a due-time index instead of sweeping every customer."""
    due: int | None = None
    for run in state.runs:
        bounds = _bounds(run, policy)
        for j, meta in enumerate(run.pieces):
            limit = _limit(run, bounds, j, policy)
            at = limit + 1 if meta.status == OPEN else limit + policy.grace_ms + 1
            due = at if due is None or at < due else due
            if meta.status == OPEN:
                break  # later pieces of a run close no earlier than this one
    return due


def merge_states(
    survivor_state: CustomerSessions | None,
    absorbed_state: CustomerSessions,
    survivor_id: str,
    policy: SessionPolicy,
    clock_ms: int,
) -> SessionsUpdate:
    """Fold an absorbed customer's sessions into the survivor's after an identity merge at event-time ``clock_ms``.

    Runs of both that overlap or link (gap rule) merge exactly as in :func:`add_events`; every session that
    came from the absorbed customer is re-emitted under ``survivor_id`` (same id and status, next version)
    unless it was merged into another session ("merged"). Not guaranteed: sessions already dropped from
    either state (final, beyond the grace) are not revisited; downstream re-keys them from the identity-merge
    record. Dropped bot-cap pieces of a run do not take part in linking.
    """
    if survivor_state is None:
        survivor_state = CustomerSessions(survivor_id)
    # Sessions last published under another customer id are re-published under the survivor's.
    reattributed = {r.sid for s in (survivor_state, absorbed_state) if s.customer_id != survivor_id for r in s.runs}
    # A stack of linked groups, each with (last, frontier, back); runs arrive sorted by start. A run that links
    # to an earlier group also links to every group after it (contiguity), so only the top needs checking.
    groups: list[tuple[list[Run], int, int, int]] = []
    for run in sorted((*survivor_state.runs, *absorbed_state.runs), key=lambda r: (r.first, r.sid)):
        group = ([run], run.last, run.frontier(policy), run.back(policy))
        while groups and (group[0][0].first <= max(groups[-1][1], groups[-1][2]) or group[3] <= groups[-1][1]):
            top = groups.pop()
            group = (top[0] + group[0], max(top[1], group[1]), max(top[2], group[2]), min(top[3], group[3]))
        groups.append(group)
    runs: list[Run] = []
    versions: list[SessionVersion] = []
    gone: list[Run] = []
    for members, _last, _front, _back in groups:
        survivor = min(members, key=_seniority)
        if len(members) > 1:
            gone.extend(r for r in members if r is not survivor and r.pieces)
            unique = {(f.t, f.event_id): f for r in members for f in r.facts}  # an event routed to both ids
            survivor = dataclasses.replace(survivor, facts=tuple(sorted(unique.values())))
        run, emitted = _refresh(survivor, survivor_id, policy, clock_ms, force=survivor.sid in reattributed)
        runs.append(run)
        versions.extend(emitted)
    for run in gone:
        versions.extend(_tombstones(run, runs, survivor_id, policy, clock_ms))
    s, a = survivor_state, absorbed_state
    state = CustomerSessions(survivor_id, tuple(runs), _later(s.max_event_time, a.max_event_time),
                             _later(s.watermark_ms, a.watermark_ms))  # fmt: skip
    return SessionsUpdate(state, versions, [])
