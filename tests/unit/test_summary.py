"""What the demo counts: a canonical event published again from the same input (at-least-once after a re-read)
is told apart from an upstream duplicate that ingest failed to drop."""

from __future__ import annotations

from collections import Counter

from pipeline.summary import OutputSummary


def test_a_republication_is_not_a_dedup_miss() -> None:
    s = OutputSummary(canonical_event_ids=Counter({"a": 2, "b": 1, "c": 3}),
                      sources={"a": {("web", 0, 5)}, "b": {("web", 0, 6)},
                               "c": {("web", 1, 1), ("web", 1, 9)}})  # fmt: skip
    assert s.duplicate_event_ids == 3
    assert s.republished == 2  # a once, c once (c came from two inputs and one of them twice)
    assert s.dedup_misses == 1  # c: an upstream duplicate that was published from both of its inputs
