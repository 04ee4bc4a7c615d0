"""Gapless, in-order consumption per partition, for the agents whose state follows a partition's sequence.

Faust can hand an agent a partition's messages with a hole around a rebalance: events prefetched before it,
or a fetch that jumped ahead after the seek to the committed offset (faust-streaming#216, #221). Ingest marks,
the identity writer's log position and the journey's pending items all assume that every offset is seen once,
in order, so each of these agents passes its batches through a :class:`Cursor` first.

Per partition the cursor knows the next offset due: the committed offset after every rebalance (Faust's
rebalances revoke everything), and one past the last admitted message after that. A message at the due offset
is admitted; one below it was admitted before (or committed) and is dropped, unacknowledged; one above it opens
a hole. The cursor reads the hole's records straight from the broker and admits them, as :class:`Refilled`
events, before the message that revealed it. Seeking Faust's consumer back instead is not reliable while
messages are in flight: its fetch loop drops every message below the highest offset it has handed out, and a
batch fetched before the seek moves that offset past the seek again. A hole at the end of a partition has no
message after it; a timer finds it and seeks back. Such holes come from a rebalance (a partition that stays
assigned keeps its fetch position, and what was fetched under the old assignment is never delivered), so the
timer looks only at partitions that admitted nothing since the last rebalance and whose fetch position is past
the due offset for 2 s. Once a partition admitted in the current assignment, a fetch position ahead of the due
offset means messages in flight (a busy agent, a paused partition), never a reason to seek.

A rebalance is applied at the next :meth:`Cursor.admit`, not when it is signalled: the agent may still be
finishing a batch of the old assignment then, and that batch must not move the new positions.

Faust itself treats every offset it did not deliver as acknowledged (meant for compacted topics); around a
rebalance those include skipped messages, which would let a commit pass messages nobody processed.
:func:`install` turns that off; the cursor marks a hole as done itself, once its records are admitted, so
that acknowledging the message after the hole commits past it.

Guarantees: the admitted events of a partition are consecutive records from its committed offset on, in
order, within one assignment; events of partitions not assigned at the time are dropped. Not guaranteed:
bounded memory for a hole (it is read whole; Faust's holes are at most a fetch or a rebalance's worth of
messages).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.transport.consumer import Consumer as FaustConsumer
from faust.types import TP

from agents.commit_marks import fetch_marks
from pipeline.topic_reader import read_range, start_offsets

log = logging.getLogger(__name__)

#: partitions -> committed offset of each that the group has committed
CommittedFn = Callable[[list[int]], Awaitable[dict[int, int]]]
#: (partition, start, end) -> the records (offset, key, value) in [start, end), in order
ReadFn = Callable[[int, int, int], Awaitable[list[tuple[int, bytes, bytes]]]]
#: (partition, start, end) -> None: offsets [start, end) are processed once the message at ``end`` is
FillFn = Callable[[int, int, int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RefilledMessage:
    """The part of a Faust message the agents read."""

    partition: int
    offset: int
    key: bytes
    value: bytes
    time_in: float | None = None  # Faust's monitor stamps its messages on arrival; a refilled one has no stamp


@dataclass(frozen=True, slots=True)
class Refilled:
    """A record of a hole, read from the broker: processed like a Faust event, never acknowledged to Faust."""

    message: RefilledMessage


@dataclass
class Admitted:
    """The events of a batch to process, in their original order; ``reset``: the first batch after a rebalance
    (the agent forgets its own per-partition positions too)."""

    events: list[Any] = field(default_factory=list)
    reset: bool = False
    dropped: int = 0
    generation: int = 0  # pass to :meth:`Cursor.ack` with these events


class Cursor:
    """The next offset due per partition of one source topic (see the module docstring)."""

    def __init__(
        self, topic: str, committed: CommittedFn, read: ReadFn, fill: FillFn, stall_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic, owned: Callable[[], Collection[int]] | None = None,
    ) -> None:  # fmt: skip
        self.topic = topic
        self._owned = owned
        self.next: dict[int, int] = {}
        self._progress: dict[int, float] = {}  # partition -> when it last admitted, or was found stalled
        self._stall_s = stall_s
        self._clock = clock
        self._committed = committed
        self._read = read
        self._fill = fill
        self._rebalanced = False
        self._fresh: dict[int, int] = {}  # committed offsets read since the rebalance, before the next batch
        self._synced: set[int] = set()  # partitions that admitted a message since the last rebalance
        self.refilled = 0
        self.generation = 0

    def rebalanced(self) -> None:
        """A rebalance happened: every partition resumes at its committed offset (applied at the next batch)."""
        self._rebalanced = True
        self.generation += 1
        self._fresh.clear()
        self._progress.clear()
        self._synced.clear()

    async def ack(self, stream: Any, events: Iterable[Any], generation: int) -> None:
        """Acknowledge the Faust events among ``events``, admitted in ``generation``. Events of an earlier
        assignment are not: Faust forgot their partitions' committed offsets at the revocation and would count
        them into the new assignment's commits, where the new owner processes them again."""
        if generation != self.generation:
            return
        for event in events:
            if not isinstance(event, Refilled):  # covered by the fill of its hole
                await stream.ack(event)

    async def admit(self, events: Sequence[Any]) -> Admitted:
        """The events of ``events`` (Faust events of this topic) to process now, holes filled; the others are
        dropped."""
        out = Admitted(generation=self.generation)
        if self._rebalanced:
            self._rebalanced, out.reset = False, True
            self.next = dict(self._fresh)  # nothing was committed since: still the committed offsets
            self._fresh.clear()
        if self._owned is not None:  # a batch fetched before a rebalance can hold partitions assigned elsewhere now
            owned = self._owned()
            mine = [e for e in events if e.message.partition in owned]
            out.dropped, events = len(events) - len(mine), mine
        unknown = sorted({e.message.partition for e in events} - self.next.keys())
        if unknown:
            self.next.update(await self._committed(unknown))
        for event in events:
            p, offset = event.message.partition, event.message.offset
            due = self.next.get(p)
            if due is not None and offset < due:
                out.dropped += 1
                continue
            if due is not None and offset > due:
                records = await self._read(p, due, offset)
                log.warning("%s[%d]: offsets %d..%d skipped by the consumer; %d records read from the broker",
                            self.topic, p, due, offset - 1, len(records))  # fmt: skip
                out.events.extend(Refilled(RefilledMessage(p, o, k, v)) for o, k, v in records)
                self.refilled += len(records)
                await self._fill(p, due, offset)
            out.events.append(event)
            self.next[p] = offset + 1
        if out.events:
            now = self._clock()
            for p in {e.message.partition for e in out.events}:
                self._progress[p] = now
                self._synced.add(p)
        return out

    def synced(self, partition: int) -> bool:
        """Whether ``partition`` admitted a message since the last rebalance (its positions are current)."""
        return partition in self._synced

    async def due(self, partition: int) -> int:
        """The next offset to admit from ``partition``."""
        known = self._fresh if self._rebalanced else self.next
        if partition in known:
            return known[partition]
        generation = self.generation
        due = (await self._committed([partition]))[partition]
        if generation == self.generation:
            return (self._fresh if self._rebalanced else self.next).setdefault(partition, due)
        return due

    async def stalled(self, partition: int, position: int | None) -> int | None:
        """The offset to seek ``partition`` back to when it admitted nothing since the last rebalance and the
        consumer's fetch ``position`` stayed past the due offset for ``stall_s``: the consumer fetched records it
        never delivered (it keeps the position of a partition that stays assigned across a rebalance, fetched
        under the old assignment). None when the partition is fine; at most once per ``stall_s``."""
        now = self._clock()
        if position is None or partition in self._synced:
            return None
        if not self._rebalanced and position <= self.next.get(partition, position + 1):
            self._progress[partition] = now
            return None
        if now - self._progress.setdefault(partition, now) < self._stall_s:
            return None  # the broker is asked only once the partition looks stalled
        self._progress[partition] = now
        due = await self.due(partition)
        return due if position > due else None


def faust_cursor(app: Any, topic: str, bootstrap: str, group_id: str, client_config: Mapping[str, Any]) -> Cursor:
    """A cursor over ``topic`` for an agent of ``app``: committed offsets and holes read from the broker, a
    rebalance signalled by Faust's revocation, and a timer that seeks a stalled partition back
    (:meth:`Cursor.stalled`)."""

    def committed_or_start(partitions: list[int]) -> dict[int, int]:
        # Never committed: the consumer starts at the log's start (auto.offset.reset=earliest).
        found = fetch_marks(bootstrap, group_id, [(topic, p) for p in partitions], client_config)
        offsets = {p: offset for (_topic, p), (offset, _mark) in found.items()}
        missing = [p for p in partitions if p not in offsets]
        return offsets | (start_offsets(bootstrap, topic, missing, client_config) if missing else {})

    async def committed(partitions: list[int]) -> dict[int, int]:
        return await asyncio.get_running_loop().run_in_executor(None, committed_or_start, partitions)

    async def read(partition: int, start: int, end: int) -> list[tuple[int, bytes, bytes]]:
        return await asyncio.get_running_loop().run_in_executor(
            None, read_range, bootstrap, topic, partition, start, end, client_config
        )

    async def fill(partition: int, start: int, end: int) -> None:
        await _FAUST_ADD_GAP(app.consumer, TP(topic, partition), start, end - 1)

    def owned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == topic}

    cursor = Cursor(topic, committed, read, fill, owned=owned)

    def on_revoked(_app: Any, revoked: Any, **_kwargs: Any) -> None:
        cursor.rebalanced()

    app.on_partitions_revoked.connect(on_revoked)

    async def audit() -> None:
        if app.rebalancing:
            return
        consumer = app.consumer
        for tp in [tp for tp in consumer.assignment() if tp.topic == topic]:
            try:
                target = await cursor.stalled(tp.partition, await consumer.position(tp))
                if target is not None:
                    log.warning("%s[%d]: fetched to %s but due at %d; seeking back", topic, tp.partition,
                                await consumer.position(tp), target)  # fmt: skip
                    # seek_wait runs on the consumer's thread and resets Faust's read offset of the partition.
                    await consumer.seek_wait({tp: target})
            except Exception as exc:  # revoked meanwhile, or the consumer is rebalancing: next round
                log.info("%s[%d]: position check not possible now (%r)", topic, tp.partition, exc)

    app.timer(1.0, name=f"cursor-{topic}")(audit)

    return cursor


_FAUST_ADD_GAP = FaustConsumer._add_gap


async def _no_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """Faust's consumer calls this for every jump in the offsets it delivers: ignored (see the module docstring)."""


def install() -> None:
    """Stop Faust from counting offsets it did not deliver as acknowledged. Call before the app starts."""
    setattr(FaustConsumer, "_add_gap", _no_gap)  # noqa: B010
