"""The events an ingest agent holds until the identity writer's watermark has passed them, per channel.

Why per event and not per batch: an event may be routed as soon as the watermark is above its own position, and
the journey may apply it as soon as every source promises nothing earlier. A batch routed only when the
watermark had passed its *newest* event made each result wait for a second round of progress reports (the
slowest partition's next batch). Routing every held event below the watermark lets each partition promise
the watermark itself: everything it has read below it is routed, and what it reads later lies at or above its
progress mark (order times never go back on a partition, docs/time.md).

Inputs are acknowledged per batch, in the order taken, once every event of the batch is routed: the commit then
always lands on a batch end, whose progress mark is recorded (agents/commit_marks.py). Guarantees: each entry is
returned by :meth:`HeldBatches.route` exactly once, at the first call whose watermark is above its order time;
:meth:`HeldBatches.marks` never promises more than the held entries and the partitions' marks allow. Not
guaranteed: that an entry routed before a crash is not routed again after it (its batch was not acknowledged;
the journey skips what a customer already applied).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.domain.eventtime import Pos

_NOTHING = 2**63  # ``low`` of a batch with nothing left to route


@dataclass(slots=True)
class Held:
    """One taken batch: its inputs (acknowledged once ``done``) and the events of it not routed yet."""

    events: list[Any]
    records: list[Mapping[str, Any]]
    values: list[bytes]
    positions: list[Pos]
    ends: dict[int, tuple[int, int]]  # partition -> (offset after the batch, mark there)
    generation: int
    low: int = field(init=False)  # the smallest order time still held: a pass skips the batch in O(1)

    def __post_init__(self) -> None:
        self.low = min((p.order_time for p in self.positions), default=_NOTHING)

    @property
    def done(self) -> bool:
        return not self.positions

    def take_below(self, watermark: int) -> tuple[list[Mapping[str, Any]], list[bytes], list[Pos]]:
        """Remove and return the entries whose order time is below ``watermark`` (in their order)."""
        if self.low >= watermark:
            return [], [], []
        due = [i for i, p in enumerate(self.positions) if p.order_time < watermark]
        if len(due) == len(self.positions):
            out = self.records, self.values, self.positions
            self.records, self.values, self.positions = [], [], []
            self.low = _NOTHING
            return out
        keep = [i for i, p in enumerate(self.positions) if p.order_time >= watermark]
        out = [self.records[i] for i in due], [self.values[i] for i in due], [self.positions[i] for i in due]
        self.records = [self.records[i] for i in keep]
        self.values = [self.values[i] for i in keep]
        self.positions = [self.positions[i] for i in keep]
        self.low = min(p.order_time for p in self.positions)
        return out


@dataclass
class Routed:
    """What one routing pass releases: the entries, and the batches now complete at the head (in order)."""

    records: list[Mapping[str, Any]] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    positions: list[Pos] = field(default_factory=list)
    complete: list[Held] = field(default_factory=list)


class HeldBatches:
    """The held batches of one channel, oldest first."""

    def __init__(self) -> None:
        self.batches: deque[Held] = deque()
        self.sent: dict[int, int] = {}  # partition -> the mark last promised to the journey

    def __bool__(self) -> bool:
        return bool(self.batches)

    def append(self, held: Held) -> None:
        self.batches.append(held)

    def clear(self) -> None:
        self.batches.clear()
        self.sent.clear()

    def waiting(self) -> int:
        """Events not routed yet."""
        return sum(len(h.positions) for h in self.batches)

    def holds(self, partition: int) -> bool:
        """Whether an input of ``partition`` is not acknowledged yet."""
        return any(partition in h.ends for h in self.batches)

    def held_partitions(self) -> set[int]:
        """The partitions with an input not acknowledged yet."""
        return {p for h in self.batches for p in h.ends}

    def route(self, watermark: int) -> Routed:
        """Release every held entry below ``watermark``, and pop the complete batches at the head."""
        out = Routed()
        for held in self.batches:
            records, values, positions = held.take_below(watermark)
            out.records += records
            out.values += values
            out.positions += positions
        while self.batches and self.batches[0].done:
            out.complete.append(self.batches.popleft())
        return out

    def marks(self, watermark: int, current: Mapping[int, int], every: bool = False) -> dict[int, int]:
        """Progress to promise the journey after :meth:`route` at ``watermark``, per partition: its current mark,
        or the watermark if less while some input of it is still held (everything of it below the watermark is
        routed; everything held or still to come lies at or above the smaller one). Only promises that grew,
        unless ``every``: a message that carries entries reports every partition, so that a journey which
        declared one idle sees it active again with them (docs/time.md, idle sources)."""
        out: dict[int, int] = {}
        held = self.held_partitions()
        for partition, mark in current.items():
            promise = min(mark, watermark) if partition in held else mark
            before = self.sent.get(partition)
            if every or before is None or promise > before:
                out[partition] = promise
                self.sent[partition] = promise if before is None else max(before, promise)
        return out
