"""Per-customer session state: the retained events of recent sessions, compact and JSON-serialisable.

One :class:`CustomerSessions` per resolved customer. It holds a :class:`Run` per group of linked events still
inside the grace horizon (a run is one session, or several pieces when the bot cap cut it), each run's facts
sorted by ``(event_time, event_id)``, plus the version counter, status and change signature of every piece
already emitted. Keeping the facts (not running totals) is what lets a late event or a merge recompute the
summary exactly; runs that can no longer change are dropped by the sweep, which keeps the state small.

Objects here are immutable: updates build new runs and share the untouched ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from pipeline.domain.sessions_summary import OPEN, STORE, Fact, SessionPolicy, reach

STATE_FORMAT = 2


class PieceMeta(NamedTuple):
    """What was last emitted for one piece: its version, status, and change signature (start, size, bot).

    Facts are only ever added to a run, so a piece with the same start and size holds the same events.
    """

    version: int
    status: str
    start: int
    size: int
    bot: bool


@dataclass(frozen=True, slots=True)
class Run:
    """Linked events of one customer; ``pieces[j]`` describes piece ``piece0 + j`` (bot-cap pieces).

    ``carry`` = (max of t + reach, max t) over final pieces already dropped from the front of this run
    (only when ``piece0 > 0``): they still link later events into the run.
    """

    sid: str
    facts: tuple[Fact, ...]
    pieces: tuple[PieceMeta, ...] = ()
    piece0: int = 0
    carry: tuple[int, int] | None = None

    @property
    def first(self) -> int:
        return self.facts[0].t

    @property
    def last(self) -> int:
        return self.facts[-1].t

    def piece_id(self, k: int) -> str:
        """Stable id of piece ``k``: the run's id for the first piece, ``<id>.<k>`` for bot-cap pieces."""
        return self.sid if k == 0 else f"{self.sid}.{k}"

    def frontier(self, policy: SessionPolicy) -> int:
        """max(t + reach) over the run: a later event at or before this links in."""
        facts = self.facts
        best = facts[-1].t + reach(facts[-1].channel, policy)
        # Only a store event within (store_gap - gap) of the end can reach further than the last event.
        stop = facts[-1].t - (policy.store_gap_ms - policy.gap_ms)
        for f in reversed(facts):
            if f.t < stop:
                break
            if f.channel == STORE:
                best = max(best, f.t + policy.store_gap_ms)
                break
        return best if self.carry is None else max(best, self.carry[0])

    def back(self, policy: SessionPolicy) -> int:
        """min(t - reach) over the run: an earlier event at or after this links in."""
        facts = self.facts
        best = facts[0].t - reach(facts[0].channel, policy)
        stop = facts[0].t + (policy.store_gap_ms - policy.gap_ms)
        for f in facts:
            if f.t > stop:
                break
            if f.channel == STORE:
                best = min(best, f.t - policy.store_gap_ms)
                break
        return best

    def links(self, t: int, channel: str, policy: SessionPolicy) -> bool:
        """Whether an event at ``t`` on ``channel`` links to at least one event of this run (gap rule)."""
        first, last = self.facts[0].t, self.facts[-1].t
        if t > last:
            return t <= self.frontier(policy) or t - reach(channel, policy) <= last
        if t < first:
            if self.carry is not None and t > self.carry[1]:
                return True  # between the dropped pieces and the retained ones: inside the run's span
            return t + reach(channel, policy) >= first or t >= self.back(policy)
        return True

    def links_run(self, later: Run, policy: SessionPolicy) -> bool:
        """Whether ``later`` (starting at or after this run) shares a link with this run."""
        return later.first <= self.last or later.first <= self.frontier(policy) or later.back(policy) <= self.last


@dataclass(frozen=True, slots=True)
class CustomerSessions:
    """Everything the sessioniser keeps for one customer; ``runs`` sorted by start, never overlapping.

    ``max_event_time``: largest accepted event time. ``watermark_ms``: the customer's event-time clock at the
    last :func:`~pipeline.domain.sessions.sweep`.
    """

    customer_id: str
    runs: tuple[Run, ...] = ()
    max_event_time: int | None = None
    watermark_ms: int | None = None

    def open_pieces(self) -> int:
        """Session pieces not closed yet."""
        return sum(1 for r in self.runs for p in r.pieces if p.status == OPEN)

    def has_event(self, event_time: int, event_id: str) -> bool:
        """Whether the event is among the retained ones (a replay or duplicate of it is then ignored)."""
        for run in self.runs:
            if run.facts[0].t <= event_time <= run.facts[-1].t:
                return any(f.t == event_time and f.event_id == event_id for f in run.facts)
        return False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, str, int, float, bool, None only)."""
        return {
            "format": STATE_FORMAT,
            "customer_id": self.customer_id,
            "max_event_time": self.max_event_time,
            "watermark_ms": self.watermark_ms,
            "runs": [_run_to_dict(r) for r in self.runs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CustomerSessions:
        """Inverse of :meth:`to_dict`. Raises ValueError for an unknown state format."""
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"unknown session state format {data.get('format')!r}")
        return cls(
            customer_id=data["customer_id"],
            runs=tuple(_run_from_dict(r) for r in data["runs"]),
            max_event_time=data["max_event_time"],
            watermark_ms=data["watermark_ms"],
        )


def _run_to_dict(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sid": run.sid,
        "facts": [[f.t, f.event_id, f.channel, f.event_type, list(f.products), *f[5:]] for f in run.facts],
        "pieces": [list(p) for p in run.pieces],
    }
    if run.piece0:  # rare (bot runs only): omitted otherwise to keep the common state small
        out["piece0"] = run.piece0
        out["carry"] = list(run.carry) if run.carry else None
    return out


def _run_from_dict(data: dict[str, Any]) -> Run:
    carry = data.get("carry")
    return Run(
        sid=data["sid"],
        facts=tuple(Fact(f[0], f[1], f[2], f[3], tuple(f[4]), *f[5:]) for f in data["facts"]),
        pieces=tuple(PieceMeta(*p) for p in data["pieces"]),
        piece0=data.get("piece0", 0),
        carry=(carry[0], carry[1]) if carry else None,
    )
