"""Watermark alignment rule: pause what runs ahead, never what holds the watermark back."""

from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.alignment import ahead
from pipeline.domain.eventtime import NEVER

HOUR = 3_600_000


def test_pauses_partitions_past_the_watermark_by_more_than_the_bound() -> None:
    marks = {0: 10 * HOUR, 1: 12 * HOUR, 2: 11 * HOUR + 1, 3: NEVER}
    assert ahead(marks, 10 * HOUR, HOUR) == {1, 2}


def test_nothing_paused_while_the_watermark_is_unknown() -> None:
    assert ahead({0: 50 * HOUR, 1: 0}, NEVER, HOUR) == set()


@given(st.dictionaries(st.integers(0, 7), st.integers(0, 10**9), min_size=1), st.integers(0, 10**8))
def test_the_slowest_partition_is_never_paused(marks: dict[int, int], max_ahead: int) -> None:
    # The watermark is at most the least progress of its sources: that source must keep reading.
    watermark = min(marks.values())
    paused = ahead(marks, watermark, max_ahead)
    assert all(marks[p] > watermark + max_ahead for p in paused)
    assert min(marks, key=marks.__getitem__) not in paused
