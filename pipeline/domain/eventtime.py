"""Event-time order and watermarks: positions of items in event time, and the minimum progress of sources.

Pure: no IO, no clock. The model is the one of Flink, Kafka Streams and Beam (see docs/time.md):

* Every item a stage applies has a :class:`Pos`: ``(order_time, event_time, rank, event_id)``. ``order_time``
  is the event time at which the item takes effect. For an event that arrived in order on its source
  partition it is its event time; for one that arrived after a later event of the same partition (but within
  the allowed lateness) it is that partition's progress at its arrival (:mod:`pipeline.domain.lateness`), so
  that a late event takes effect where it was learned instead of rewriting what was already acted on.
  Items are applied in ``Pos`` order, a total order that depends on the items only.
* Every source reports its *progress*: the largest ``order_time`` it has sent. A source never sends an item
  with ``order_time`` below its reported progress again. A stage's watermark is the **minimum** progress over
  all the sources it expects; an item is applicable once ``order_time < watermark`` (strictly: items sharing
  an ``order_time`` are then all present and applied together).
* A source that declares itself idle (its partition is consumed to the end and nothing arrived for the idle
  timeout) stops holding the watermark back; when every source is idle the watermark moves just past the
  largest progress seen, so everything received is applied. Idleness, and the progress a source read to its
  end promises from its recent delays (:class:`Punctuality`), are where processing time decides something
  (docs/time.md): an item that comes later than either allowed may be behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: Ranks of items sharing an event: identity controls take effect before the event that carried the link.
RANK_TIMER, RANK_CONTROL, RANK_EVENT = 0, 1, 2
NEVER = -(2**62)  # progress of a source nothing was heard from yet: holds every watermark back


class Pos(NamedTuple):
    """Where an item takes effect in event time; tuples compare field by field."""

    order_time: int
    event_time: int
    rank: int
    event_id: str

    @classmethod
    def timer(cls, due: int) -> Pos:
        """A timer due at ``due``: before every item with the same order time."""
        return cls(due, NEVER, RANK_TIMER, "")


def version_at(clock_ms: int, previous: int) -> int:
    """A version number for an output emitted at event time ``clock_ms``: ``clock_ms * 1000``, or one more
    than the previous version when that is not smaller. Equal inputs give equal versions, whatever the
    batching, because outputs are emitted once per distinct ``order_time`` (see docs/time.md)."""
    return max(previous + 1, clock_ms * 1000)


@dataclass(slots=True)
class Progress:
    """One source's progress: the largest order time it sent, and whether it declared itself idle."""

    mark: int = NEVER
    idle: bool = False


@dataclass(slots=True)
class Sources:
    """Progress of every source a stage expects, and the watermark it implies (monotone).

    ``expected`` names the sources that must be heard from before the watermark moves at all (the channel
    partitions and the identity writer). Sources outside it (other journey partitions) only count once
    heard from; callers ask for them explicitly with :meth:`mark_of`.
    """

    expected: frozenset[str]
    progress: dict[str, Progress] = field(default_factory=dict)
    floor: int = NEVER

    def update(self, source: str, mark: int, idle: bool) -> bool:
        """Record a progress report; returns whether anything changed. Marks never go back, and a report that
        does not advance the mark does not end a source's idleness: it says nothing the idle mark did not (a
        worker that lost the partition may send it after the new owner declared the partition idle)."""
        known = self.progress.get(source)
        if known is None:
            self.progress[source] = Progress(mark, idle)
            return True
        if not idle and known.idle and mark <= known.mark:
            return False
        changed = idle != known.idle or mark > known.mark
        known.mark = max(known.mark, mark)
        known.idle = idle
        return changed

    def watermark(self) -> int:
        """Min progress over the expected non-idle sources (see the module docstring); never decreases."""
        low: int | None = None
        high = NEVER
        for name in self.expected:
            p = self.progress.get(name)
            if p is None:
                return self.floor
            high = max(high, p.mark)
            if not p.idle and (low is None or p.mark < low):
                low = p.mark
        if low is None:  # every expected source is idle: apply everything received
            low = high + 1 if high != NEVER else NEVER
        self.floor = max(self.floor, low)
        return self.floor

    def idle(self, source: str) -> bool:
        """Whether the source declared itself idle (and has not sent anything since)."""
        p = self.progress.get(source)
        return p is not None and p.idle

    def mark_of(self, source: str) -> int:
        """A source's progress (``NEVER`` when not heard from)."""
        p = self.progress.get(source)
        return NEVER if p is None else p.mark

    def to_dict(self) -> dict[str, Any]:
        return {"f": self.floor, "p": {k: [v.mark, v.idle] for k, v in sorted(self.progress.items())}}

    @classmethod
    def from_dict(cls, expected: Iterable[str], doc: Mapping[str, Any] | None) -> Sources:
        sources = cls(frozenset(expected))
        if doc:
            sources.floor = int(doc["f"])
            sources.progress = {k: Progress(int(v[0]), bool(v[1])) for k, v in doc["p"].items()}
        return sources


def place(mark: int, event_time: int, allowed_lateness_ms: int) -> int | None:
    """The order time of an event arriving on a source partition whose progress is ``mark``, or None when it is
    more than ``allowed_lateness_ms`` behind that progress (a ``late_event``). The new progress is
    ``max(mark, order_time)``. A function of the partition's content up to the event, nothing else."""
    if mark != NEVER and event_time < mark - allowed_lateness_ms:
        return None
    return event_time if event_time > mark else mark


class Punctuality:
    """How late each source's events have reached the reader lately: the largest delay (arrival minus event
    time) seen in the current and the previous window of ``window_ms`` of arrival time.

    What it is for: a source consumed to its end whose events have all arrived within ``D`` of their event time
    may promise, at arrival time ``now``, that nothing older than ``now - D`` will come (docs/time.md, caught-up
    sources). A producer that uploads in bursts, or delivers old events, shows long delays here and so promises
    little; a real-time one promises almost the wall clock. Pure: arrival times are handed in.
    """

    def __init__(self, window_ms: int) -> None:
        self._window = window_ms
        self._seen: dict[int, tuple[int, int, int]] = {}  # source -> (window index, its max, the previous max)

    def observe(self, source: int, now_ms: int, delay_ms: int) -> None:
        index = now_ms // self._window
        found = self._seen.get(source)
        if found is None or index > found[0] + 1:
            self._seen[source] = (index, delay_ms, NEVER)
        elif index == found[0] + 1:
            self._seen[source] = (index, delay_ms, found[1])
        else:
            self._seen[source] = (found[0], max(found[1], delay_ms), found[2])

    def delay(self, source: int, now_ms: int) -> int | None:
        """The largest delay of the last one to two windows (None: nothing arrived from the source lately)."""
        found = self._seen.get(source)
        index = now_ms // self._window
        if found is None or index > found[0] + 1:
            return None
        if index == found[0] + 1:
            return found[1]
        return max(found[1], found[2])
