"""The journey's due-time index against a plain model: a dict of due times and the set of customers not taken."""

from __future__ import annotations

import gc

from hypothesis import given
from hypothesis import strategies as st

from pipeline.steps.due_index import DueIndex

BUCKET = 10
KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f"])
TIMES = st.integers(min_value=0, max_value=60)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.one_of(st.none(), TIMES)),
        st.tuples(st.just("take"), TIMES, st.integers(min_value=1, max_value=4)),
    ),
    max_size=60,
)


@given(OPS)
def test_the_index_takes_what_is_due_earliest_buckets_first(ops: list[tuple[str, object, object]]) -> None:
    index = DueIndex(BUCKET)
    due: dict[bytes, int] = {}
    waiting: set[bytes] = set()  # customers with a due time that were not taken since they got it
    for op, a, b in ops:
        if op == "set":
            key, when = a, b
            assert isinstance(key, bytes) and (when is None or isinstance(when, int))
            if due.get(key) != when:
                due.pop(key, None)
                waiting.discard(key)
                if when is not None:
                    due[key] = when
                    waiting.add(key)
            index.set(key, when)
        else:
            before, limit = a, b
            assert isinstance(before, int) and isinstance(limit, int)
            ready = {k for k in waiting if due[k] < before}
            assert index.any_before(before) == bool(ready)
            taken = index.take(before, limit)
            assert len(taken) == len(set(taken)) == min(limit, len(ready))
            assert set(taken) <= ready
            left = ready - set(taken)
            assert all(due[k] // BUCKET <= due[other] // BUCKET for k in taken for other in left)
            waiting -= set(taken)
        assert len(index) == len(due)
        assert all(index.get(k) == d and k in index for k, d in due.items())


def test_the_entries_are_not_tracked_by_the_garbage_collector() -> None:
    index = DueIndex()
    for i in range(10_000):
        index.set(b"p:%016x" % i, 1_767_225_600_000 + (i % 7) * 3_600_000)
    index.take(1_767_225_600_000 + 3_600_000, 100)
    assert not gc.is_tracked(index._due)
    assert not any(gc.is_tracked(bucket) for bucket in index._buckets.values())
