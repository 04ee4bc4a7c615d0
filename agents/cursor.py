"""Gapless, in-order consumption per partition, for the agents whose state follows a partition's sequence.

Faust can hand an agent a partition's messages with a hole around a rebalance: events prefetched before it,
or a fetch that jumped ahead after the seek to the committed offset (faust-streaming#216, #221). Ingest marks,
the identity writer's log position and the journey's pending items all assume that every offset is seen once,
in order, so each of these agents passes its batches through a :class:`Cursor` first.

Per partition the cursor knows the next offset due: the committed offset after every rebalance (Faust's
rebalances revoke everything), and one past the last admitted message after that. A message at the due offset
is admitted; one below it was admitted before (or committed) and is dropped; one above it opens a hole. A hole
that holds records is a skip: the cursor seeks the partition back to the first of them and drops what arrives
until that offset comes round. A hole without records (transaction markers) is accepted. Dropped events are
never acknowledged: the admitted copy of the same offset is, once it has been processed.

A rebalance is applied at the next :meth:`Cursor.admit`, not when it is signalled: the agent may still be
finishing a batch of the old assignment then, and that batch must not move the new positions.

Guarantees: the admitted events of a partition are consecutive records from its committed offset on, in
order, within one assignment. Not guaranteed: progress while Faust keeps skipping (the seek is repeated at most
once per ``reseek_s``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from agents.commit_marks import fetch_marks
from pipeline.topic_reader import first_offset, start_offsets

log = logging.getLogger(__name__)

#: partitions -> committed offset of each that the group has committed
CommittedFn = Callable[[list[int]], Awaitable[dict[int, int]]]
#: (partition, start, end) -> offset of the first record in [start, end), or None when there is none
FirstRecordFn = Callable[[int, int, int], Awaitable[int | None]]
#: (partition, offset) -> None: make the consumer fetch the partition from offset
SeekFn = Callable[[int, int], Awaitable[None]]


@dataclass
class Admitted:
    """The events of a batch to process, in their original order; ``reset``: the first batch after a rebalance
    (the agent forgets its own per-partition positions too)."""

    events: list[Any] = field(default_factory=list)
    reset: bool = False
    dropped: int = 0


class Cursor:
    """The next offset due per partition of one source topic (see the module docstring)."""

    def __init__(
        self, topic: str, committed: CommittedFn, first_record: FirstRecordFn, seek: SeekFn,
        reseek_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.topic = topic
        self.next: dict[int, int] = {}
        self._rewind: dict[int, tuple[int, float]] = {}  # partition -> (offset sought, when)
        self._committed = committed
        self._first_record = first_record
        self._seek = seek
        self._reseek_s = reseek_s
        self._clock = clock
        self._rebalanced = False
        self.skips = 0

    def rebalanced(self) -> None:
        """A rebalance happened: every partition resumes at its committed offset (applied at the next batch)."""
        self._rebalanced = True

    async def admit(self, events: Sequence[Any]) -> Admitted:
        """The events of ``events`` (Faust events of this topic) to process now; the others are dropped."""
        out = Admitted()
        if self._rebalanced:
            self._rebalanced, out.reset = False, True
            self.next.clear()
            self._rewind.clear()
        unknown = sorted({e.message.partition for e in events} - self.next.keys() - self._rewind.keys())
        if unknown:
            self.next.update(await self._committed(unknown))
        for event in events:
            p, offset = event.message.partition, event.message.offset
            if p in self._rewind:
                target, _when = self._rewind[p]
                if offset != target:
                    out.dropped += 1
                    if offset > target:
                        await self._reseek(p)
                    continue
                del self._rewind[p]
            due = self.next.get(p)
            if due is not None and offset < due:
                out.dropped += 1
                continue
            if due is not None and offset > due:
                first = await self._first_record(p, due, offset)
                if first is not None:
                    self.skips += 1
                    log.warning("%s[%d]: offsets %d..%d skipped by the consumer; seeking back to %d",
                                self.topic, p, due, offset - 1, first)  # fmt: skip
                    self._rewind[p] = (first, float("-inf"))
                    await self._reseek(p)
                    out.dropped += 1
                    continue
            out.events.append(event)
            self.next[p] = offset + 1
        return out

    async def _reseek(self, p: int) -> None:
        target, when = self._rewind[p]
        now = self._clock()
        if now - when < self._reseek_s:
            return
        self._rewind[p] = (target, now)
        try:
            await self._seek(p, target)
        except Exception as exc:  # revoked meanwhile, or the consumer is rebalancing: try again later
            log.info("%s[%d]: seek to %d not possible now (%r)", self.topic, p, target, exc)


def faust_cursor(app: Any, topic: str, bootstrap: str, group_id: str, client_config: Mapping[str, Any]) -> Cursor:
    """A cursor over ``topic`` for an agent of ``app``: committed offsets and first records read from the broker,
    seeks through Faust's consumer, and a rebalance signalled by Faust's revocation."""

    def committed_or_start(partitions: list[int]) -> dict[int, int]:
        # Never committed: the consumer starts at the log's start (auto.offset.reset=earliest).
        found = fetch_marks(bootstrap, group_id, [(topic, p) for p in partitions], client_config)
        offsets = {p: offset for (_topic, p), (offset, _mark) in found.items()}
        missing = [p for p in partitions if p not in offsets]
        return offsets | (start_offsets(bootstrap, topic, missing, client_config) if missing else {})

    async def committed(partitions: list[int]) -> dict[int, int]:
        return await asyncio.get_running_loop().run_in_executor(None, committed_or_start, partitions)

    async def first_record(partition: int, start: int, end: int) -> int | None:
        return await asyncio.get_running_loop().run_in_executor(
            None, first_offset, bootstrap, topic, partition, start, end, client_config
        )

    async def seek(partition: int, offset: int) -> None:
        await app.consumer.seek(TP(topic, partition), offset)

    cursor = Cursor(topic, committed, first_record, seek)

    def on_revoked(_app: Any, revoked: Any, **_kwargs: Any) -> None:
        cursor.rebalanced()

    app.on_partitions_revoked.connect(on_revoked)

    return cursor
