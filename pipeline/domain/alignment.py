"""Watermark alignment: which input partitions to pause because their progress ran too far past the watermark.

Pure: no IO, no clock. In a backlog every input topic has data, and a worker reads them at the rate it can
process messages, not in event time: a small topic (social) reaches the end of the month while the large one
(web) is on its first day. Everything the fast partitions produce then waits for the watermark -- held batches
in ingest, buffered events in the journey state -- and memory grows with the backlog. Pausing a partition whose
progress is more than ``max_ahead`` past the watermark bounds that wait (Flink's watermark alignment), and
since the partitions holding the watermark back are never paused, the watermark keeps moving.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.domain.eventtime import NEVER


def ahead(marks: Mapping[int, int], watermark: int, max_ahead: int) -> set[int]:
    """The partitions (keys of ``marks``, each partition's progress) to pause: progress more than ``max_ahead``
    past ``watermark``. None while the watermark is unknown (nothing known to align with)."""
    if watermark == NEVER:
        return set()
    limit = watermark + max_ahead
    return {p for p, mark in marks.items() if mark > limit}
