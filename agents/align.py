"""Watermark alignment of a worker's input partitions (the rule: :mod:`pipeline.domain.alignment`).

A periodic check pauses fetching of every assigned channel partition whose progress mark is more than the
configured bound past the identity writer's watermark (as the worker's replica sees it), and resumes it once
the watermark has caught up. The identity writer's watermark is the minimum over every channel partition of
the group, so partitions of other workers align too.

Guarantees: in a backlog, what waits for the watermark (held ingest batches, events buffered in the journey
state) stays within about ``max_ahead`` of event time per partition instead of growing with the backlog.
Not guaranteed: an exact bound -- messages Faust fetched before the pause are still delivered. Nothing is
decided here that results depend on: pausing only changes when a partition is read, never what it contains.
The check stays out of the way of a rebalance and of table recovery, which pause and resume partitions
themselves; the next check after them pauses again what is still ahead. A partition is aligned only once it
admitted a batch in the current assignment: until then its mark is the one of an earlier ownership (or
none), and a partition taken over from a failed worker must be read at once. Nothing is paused after a
rebalance until the watermark moved again: the one seen then may be stale (the identity writer itself may have
moved to another worker and be rebuilding), and pausing against it would hold back the partitions that must
be read for it to move.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agents.cursor import Cursor
from pipeline.domain.alignment import ahead
from pipeline.domain.eventtime import NEVER
from pipeline.identity.replica import AssignmentReplica
from pipeline.metrics import IngestMetrics
from pipeline.steps.ingest import IngestStep

log = logging.getLogger(__name__)


class Alignment:
    """Pauses and resumes the channel partitions of one worker; run :meth:`check` from a periodic timer."""

    def __init__(
        self, app: Any, channels: Sequence[tuple[IngestStep, Cursor | None]], replica: AssignmentReplica,
        max_ahead_ms: int, metrics: IngestMetrics,
    ) -> None:  # fmt: skip
        self._app = app
        self._steps = {step.source_topic: (step, cursor) for step, cursor in channels}
        self._replica = replica
        self._max_ahead = max_ahead_ms
        self._metrics = metrics
        self._paused: set[Any] = set()
        self._generation: Any = None
        self._stale = NEVER  # the watermark seen at the last rebalance: aligned only once it moved past it

    def check(self) -> None:
        """Pause what runs ahead and resume what no longer does (see the module docstring)."""
        app = self._app
        if app.rebalancing or app.in_recovery:
            return
        consumer = app.consumer
        assigned = consumer.assignment()
        watermark = self._replica.watermark
        if app.consumer_generation_id != self._generation:
            self._generation, self._stale = app.consumer_generation_id, watermark
        fresh = watermark > self._stale
        pause: set[Any] = set()
        for topic, (step, cursor) in self._steps.items():
            tps = {tp.partition: tp for tp in assigned if tp.topic == topic}
            marks = {p: step.marks[p] for p in tps if p in step.marks and (cursor is None or cursor.synced(p))}
            paused = {tps[p] for p in ahead(marks, watermark, self._max_ahead)} if fresh else set()
            pause |= paused
            self._metrics.paused.get(step.channel).set(len(paused))
        resume = {tp for tp in self._paused - pause if tp in assigned}
        if resume:
            _set_paused(consumer, resume, paused=False)
        if pause:
            # Again every round: Faust resumes a partition whose stream buffer drained, and after a recovery.
            _set_paused(consumer, pause, paused=True)
        if pause != self._paused:
            log.debug("aligned to watermark %d: %d partitions paused", watermark, len(pause))
        self._paused = pause


def _set_paused(consumer: Any, tps: set[Any], paused: bool) -> None:
    """Faust's ``pause_partitions`` and ``resume_partitions``, except that the set of active partitions is
    replaced, not changed in place. Faust's fetch loop keeps that set while it hands out a fetched batch and
    skips the batch's remaining records of every partition that leaves it meanwhile -- records whose offsets
    were consumed all the same, so pausing in place opens a hole in the partition. The batch in flight keeps
    the old set and is handed out whole; the next fetch asks for the new one."""
    active = consumer._get_active_partitions()
    if paused:
        consumer._active_partitions = active - tps
        consumer._paused_partitions.update(tps)
    else:
        consumer._active_partitions = active | tps
        consumer._paused_partitions.difference_update(tps)
