"""One customer's journey in event time: the persisted record, and how pending items are applied to it.

A customer (resolved profile id) has *items* waiting in memory (canonical events, identity controls) and
*timers* derived from its record (session close, cart abandoned, campaign follow-up, the daily re-score).
:meth:`CustomerMachine.advance` applies everything whose time is below a limit (the customer's watermark),
one *instant* (order time) at a time, timers before items of the same instant, items in :class:`Pos` order.

Identity merges: ``absorbed`` (this profile was merged into another at P) hands the record over as a
*transfer* and turns the customer into a redirect. ``absorb`` (another profile was merged into this one at P)
folds that transfer in; the customer does not apply anything at or after P until the transfer has arrived (it
is *blocked*), so the survivor sees the absorbed history exactly as of P whatever the arrival order. Events are
routed as of their position (the ingest waits for the identity writer), so nothing is addressed to a profile
after it was merged away; should an item still reach one (a source that resumed after being idle), it is
forwarded to the survivor, following ``redirect`` controls that point earlier aliases at a new survivor.

Guarantees: given the same items and limits, the same record and outputs, whatever the batching (an instant
is always applied whole: a block stops *before* an instant). Items at or before the customer's clock that are
not duplicates (only possible after a source was declared idle, docs/time.md) are applied at the clock and
counted as ``behind``. Not guaranteed: anything about other customers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.domain.eventtime import NEVER, Pos
from pipeline.domain.records import CustomerEventRecord
from pipeline.domain.sessions import add_events, merge_states, next_due, sweep
from pipeline.domain.sessions_state import CustomerSessions
from pipeline.domain.sessions_summary import SessionPolicy, SessionVersion
from pipeline.steps.journey_profile import JourneyProfile, merge_profiles
from pipeline.steps.journey_signals import JourneySignals, SignalsOutput

STATE_FORMAT = 2


@dataclass(slots=True)
class Item:
    """A pending item of one customer: an event (``control`` None) or an identity control, its position, the
    framed bytes (forwarded as they are), the resolved-events offset it arrived at (recovery), and whether its
    source had been idle until then (then it may lie behind the customer's clock without being a replay)."""

    pos: Pos
    value: bytes
    offset: int
    control: dict[str, Any] | None = None
    resumed: bool = False


@dataclass(slots=True)
class CustomerState:
    """The persisted record. ``pos``: the last applied position; ``redirect``: the survivor this profile was
    merged into (then nothing else is kept)."""

    sessions: CustomerSessions | None = None
    profile: JourneyProfile | None = None
    pos: Pos = field(default_factory=lambda: Pos(NEVER, NEVER, 0, ""))
    redirect: str | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"v": STATE_FORMAT, "q": list(self.pos)}
        if self.redirect is not None:
            doc["r"] = self.redirect
        if self.sessions is not None and self.sessions.runs:
            doc["s"] = self.sessions.to_dict()
        if self.profile is not None:
            doc["p"] = self.profile.to_list()
        return orjson.dumps(doc)

    @classmethod
    def decode(cls, raw: bytes | None) -> CustomerState:
        if not raw:
            return cls()
        doc = orjson.loads(raw)
        if doc.get("v") != STATE_FORMAT:
            raise ValueError(f"unknown journey state format {doc.get('v')!r}")
        sessions = CustomerSessions.from_dict(doc["s"]) if doc.get("s") else None
        profile = JourneyProfile.from_list(doc["p"]) if doc.get("p") else None
        return cls(sessions, profile, Pos(*doc["q"]), doc.get("r"))

    def transfer_json(self) -> str:
        """The record as an ``absorbed`` transfer carries it to the survivor."""
        doc: dict[str, Any] = {}
        if self.sessions is not None and self.sessions.runs:
            doc["s"] = self.sessions.to_dict()
        if self.profile is not None:
            doc["p"] = self.profile.to_list()
        return json.dumps(doc, separators=(",", ":"))


@dataclass(slots=True)
class Advance:
    """What :meth:`CustomerMachine.advance` did for one customer."""

    applied: int = 0  # items consumed (applied, forwarded or dropped as duplicates)
    changed: bool = False
    blocked: bool = False
    behind: int = 0
    sessions: list[SessionVersion] = field(default_factory=list)
    late: list[tuple[Item, CustomerEventRecord, str]] = field(default_factory=list)
    forwards: list[tuple[str, Item]] = field(default_factory=list)  # (to customer, item)
    transfers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (to customer, control record)
    events: int = 0


class CustomerMachine:
    """Applies a customer's items and timers (see the module docstring). Stateless between calls."""

    def __init__(
        self,
        policy: SessionPolicy,
        signals: JourneySignals | None,
        decode_event: Callable[[bytes], CustomerEventRecord],
    ) -> None:
        self._policy = policy
        self._signals = signals
        self._decode = decode_event

    def next_due(self, state: CustomerState) -> int | None:
        """The earliest instant a timer of ``state`` fires at, or None."""
        if state.redirect is not None:
            return None
        due = next_due(state.sessions, self._policy) if state.sessions is not None else None
        if state.profile is not None and self._signals is not None:
            other = self._signals.next_due(state.profile)
            if other is not None and (due is None or other < due):
                due = other
        return due

    def advance(
        self,
        customer: str,
        state: CustomerState,
        items: Sequence[Item],
        limit: int,
        transfer: Callable[[str, Pos], str | None],
        out: SignalsOutput,
    ) -> Advance:
        """Apply ``items`` (sorted by position) and timers below ``limit``; ``transfer(from, pos)`` gives the
        record an absorbed profile handed over, when it has arrived. Mutates ``state`` and ``out``."""
        result = Advance()
        i = 0
        while True:
            if state.redirect is not None:
                self._forward(state, items[i:], limit, result)
                return result
            nxt = items[i].pos.order_time if i < len(items) and items[i].pos.order_time < limit else None
            due = self.next_due(state)
            if due is not None and (due >= limit or (nxt is not None and due > nxt)):
                due = None
            if nxt is None and due is None:
                return result
            instant = due if due is not None else nxt
            assert instant is not None
            j = i
            while j < len(items) and items[j].pos.order_time == instant:
                j += 1
            group = items[i:j] if nxt == instant else []
            if any(it.control is not None and it.control["kind"] == "absorb" and it.pos > state.pos
                   and transfer(it.control["old_id"], it.pos) is None for it in group):  # fmt: skip
                result.blocked = True
                return result
            self._instant(customer, state, instant, group, transfer, out, result)
            i += len(group)
            result.applied += len(group)

    # --- one instant -----------------------------------------------------------------------------------------

    def _instant(
        self, customer: str, state: CustomerState, instant: int, group: Sequence[Item],
        transfer: Callable[[str, Pos], str | None], out: SignalsOutput, result: Advance,
    ) -> None:  # fmt: skip
        clock = instant
        if instant <= state.pos.order_time and group:
            # At or behind the clock: replays of items applied before, unless their source had been idle.
            group = [it for it in group if it.pos > state.pos or (it.resumed and it.control is None)]
            if not group:
                return
            if instant < state.pos.order_time:
                clock = state.pos.order_time  # behind the customer's clock: applied now (docs/time.md)
                result.behind += len(group)
        result.changed = True
        if state.sessions is not None:
            swept = sweep(state.sessions, clock, self._policy)
            state.sessions = swept.state
            result.sessions.extend(swept.versions)
        events: list[CustomerEventRecord] = []
        sources: dict[str, Item] = {}
        for it in group:
            if state.redirect is not None:  # absorbed earlier in this instant: the rest is the survivor's
                result.forwards.append((state.redirect, it))
                continue
            if it.control is None:
                record = self._decode(it.value)
                eid = record["event_id"]
                if eid not in sources and (state.sessions is None
                                           or not state.sessions.has_event(record["event_time"], eid)):  # fmt: skip
                    events.append(record)
                    sources[eid] = it
                continue
            self._apply_events(customer, state, clock, events, sources, out, result)
            events, sources = [], {}
            self._control(customer, state, clock, it, transfer, out, result)
        if state.redirect is None:
            self._apply_events(customer, state, clock, events, sources, out, result)
        if group:
            state.pos = max(state.pos, group[-1].pos)
        timer = Pos.timer(clock)
        state.pos = max(state.pos, timer)

    def _apply_events(
        self, customer: str, state: CustomerState, clock: int, events: list[CustomerEventRecord],
        sources: dict[str, Item], out: SignalsOutput, result: Advance,
    ) -> None:  # fmt: skip
        accepted = events
        if events:
            update = add_events(state.sessions, customer, events, clock, self._policy)
            state.sessions = update.state
            result.sessions.extend(update.versions)
            late = {e["event_id"] for e, _ in update.late}
            for event, reason in update.late:
                result.late.append((sources[event["event_id"]], event, reason))
            accepted = [e for e in events if e["event_id"] not in late]
            result.events += len(accepted)
        if self._signals is None or (not accepted and state.profile is None):
            return
        state.profile = state.profile or JourneyProfile()
        self._signals.on_instant(customer, state.profile, clock, accepted, out)

    def _control(
        self, customer: str, state: CustomerState, clock: int, it: Item,
        transfer: Callable[[str, Pos], str | None], out: SignalsOutput, result: Advance,
    ) -> None:  # fmt: skip
        c = it.control
        assert c is not None
        kind = c["kind"]
        if kind == "absorbed" and c["new_id"] != customer:
            record = {**c, "kind": "transfer", "state_json": state.transfer_json()}
            result.transfers.append((c["new_id"], record))
            state.redirect, state.sessions, state.profile = c["new_id"], None, None
        elif kind == "absorb":
            doc = json.loads(transfer(c["old_id"], it.pos) or "{}")
            if doc.get("s"):
                merged = merge_states(state.sessions, CustomerSessions.from_dict(doc["s"]), customer, self._policy,
                                      clock)  # fmt: skip
                state.sessions = merged.state
                result.sessions.extend(merged.versions)
            if doc.get("p") and self._signals is not None:
                state.profile = merge_profiles(state.profile, JourneyProfile.from_list(doc["p"]))
                self._signals.on_instant(customer, state.profile, clock, [], out)
        # "redirect" only concerns profiles merged away already (handled in _forward)

    def _forward(self, state: CustomerState, items: Sequence[Item], limit: int, result: Advance) -> None:
        """A merged-away profile: forward its items below ``limit`` to the survivor; follow redirects."""
        for it in items:
            if it.pos.order_time >= limit:
                return
            result.applied += 1
            if it.pos <= state.pos and not it.resumed:
                continue
            state.pos = max(state.pos, it.pos)
            result.changed = True
            if it.control is None:
                assert state.redirect is not None
                result.forwards.append((state.redirect, it))
            elif it.control["kind"] == "redirect":
                state.redirect = it.control["new_id"]
