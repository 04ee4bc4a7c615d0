"""Held events: each routed once, as soon as the watermark passes it; promises never exceed what is held."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.domain.eventtime import Pos
from pipeline.steps.held import Held, HeldBatches


def _batch(partition_times: dict[int, list[int]], tag: int = 0) -> Held:
    records: list[Mapping[str, Any]] = []
    values: list[bytes] = []
    positions: list[Pos] = []
    ends: dict[int, tuple[int, int]] = {}
    for p, times in partition_times.items():
        for i, t in enumerate(times):
            eid = f"{p}-{tag}-{i}"
            records.append({"event_id": eid})
            values.append(eid.encode())
            positions.append(Pos(t, t, 1, eid))
        ends[p] = (len(times), max(times, default=0))
    return Held(list(values), records, values, positions, ends, 1)


def test_a_batch_is_routed_event_by_event_and_completes_when_empty() -> None:
    held = HeldBatches()
    held.append(_batch({0: [10, 20, 30]}))
    first = held.route(25)
    assert [p.order_time for p in first.positions] == [10, 20]
    assert first.complete == []  # not acknowledged while an event of it waits
    assert held.waiting() == 1
    second = held.route(31)
    assert [p.order_time for p in second.positions] == [30]
    assert len(second.complete) == 1 and not held


def test_batches_complete_in_the_order_taken() -> None:
    held = HeldBatches()
    held.append(_batch({0: [50]}))
    held.append(_batch({1: [5]}))
    out = held.route(10)
    assert [p.order_time for p in out.positions] == [5]
    assert out.complete == []  # the later batch is done, but the first is not: nothing is acknowledged yet
    out = held.route(60)
    assert [len(h.ends) for h in out.complete] == [1, 1]


def test_a_partition_with_held_inputs_promises_the_watermark_at_most() -> None:
    held = HeldBatches()
    held.append(_batch({0: [10, 40], 1: [12]}))
    held.route(20)
    assert held.marks(20, {0: 40, 1: 12, 2: 7}) == {0: 20, 1: 12, 2: 7}
    assert held.marks(20, {0: 40, 1: 12, 2: 7}) == {}  # nothing grew: nothing to send
    held.route(41)
    assert held.marks(41, {0: 40, 1: 12, 2: 7}) == {0: 40}  # all of 0 routed: its own mark
    assert held.marks(41, {0: 40, 1: 12, 2: 7}) == {}


@st.composite
def _runs(draw: st.DrawFn) -> tuple[list[dict[int, list[int]]], list[int]]:
    """Batches of up to 3 partitions whose order times never go back per partition, and rising watermarks."""
    last = {0: 0, 1: 0, 2: 0}
    batches = []
    for _ in range(draw(st.integers(1, 6))):
        batch: dict[int, list[int]] = {}
        for p in draw(st.sets(st.sampled_from([0, 1, 2]), min_size=1)):
            steps = draw(st.lists(st.integers(0, 5), min_size=1, max_size=5))
            times = []
            for step in steps:
                last[p] += step
                times.append(last[p])
            batch[p] = times
        batches.append(batch)
    watermarks = sorted(draw(st.lists(st.integers(0, 120), min_size=1, max_size=8)))
    return batches, [*watermarks, *[10**9] * len(batches)]


@settings(max_examples=300, deadline=None)
@given(_runs())
def test_every_event_once_at_the_first_watermark_above_it_and_promises_hold(
    run: tuple[list[dict[int, list[int]]], list[int]],
) -> None:
    batches, watermarks = run
    held = HeldBatches()
    marks: dict[int, int] = {}
    routed: list[tuple[str, int]] = []
    promised: dict[int, int] = {}
    taken = 0
    for i, watermark in enumerate(watermarks):
        if taken < len(batches):  # one batch taken before each pass
            batch = batches[taken]
            held.append(_batch(batch, taken))
            for p, times in batch.items():
                marks[p] = max(marks.get(p, 0), *times)
            taken += 1
        out = held.route(watermark)
        for pos in out.positions:
            assert pos.order_time < watermark
            routed.append((pos.event_id, i))
        for p, promise in held.marks(watermark, marks).items():
            assert promise > promised.get(p, -1)
            promised[p] = promise
        for h in held.batches:  # what is still held lies at or above every promise of its partition
            for pos in h.positions:
                assert pos.order_time >= watermark
                assert pos.order_time >= min(promised.get(int(pos.event_id.split("-")[0]), -1), watermark)
    ids = [eid for eid, _ in routed]
    assert len(ids) == len(set(ids)) == sum(len(t) for b in batches for t in b.values())
    assert not held


def test_a_pass_that_routes_entries_reports_every_partition_so_an_idle_one_comes_back() -> None:
    held = HeldBatches()
    held.append(_batch({0: [10]}))
    assert held.marks(5, {0: 10, 1: 8}) == {0: 5, 1: 8}
    held.route(11)
    assert held.marks(11, {0: 10, 1: 8}) == {0: 10}  # nothing routed: only what grew
    held.append(_batch({1: [9]}, 1))
    held.route(12)
    assert held.marks(12, {0: 10, 1: 9}, every=True) == {0: 10, 1: 9}
