"""DedupWindow: exact within the last `capacity` distinct ids, FIFO eviction, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.domain.dedup import DedupWindow


def test_first_sighting_is_new_then_duplicate() -> None:
    window = DedupWindow(3)
    assert window.seen("a") is False
    assert window.seen("a") is True
    assert len(window) == 1


def test_oldest_id_is_evicted_first() -> None:
    window = DedupWindow(3)
    for event_id in "abcd":
        assert not window.seen(event_id)
    assert "a" not in window and all(x in window for x in "bcd")
    assert window.seen("a") is False  # forgotten, so reported new (and re-recorded, evicting "b")
    assert "b" not in window and window.seen("c") is True


def test_duplicate_does_not_refresh_its_position() -> None:
    window = DedupWindow(2)
    window.seen("a")
    window.seen("b")
    assert window.seen("a") is True  # still first in line
    window.seen("c")
    assert "a" not in window and "b" in window


def test_memory_is_bounded() -> None:
    window = DedupWindow(100)
    for i in range(10_000):
        window.seen(f"evt-{i}")
        assert len(window) <= 100
    assert len(window) == 100 and window.capacity == 100


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DedupWindow(0)


@given(st.lists(st.integers(0, 30).map(str), max_size=200), st.integers(1, 10))
def test_matches_a_reference_model(ids: list[str], capacity: int) -> None:
    window = DedupWindow(capacity)
    remembered: list[str] = []
    for event_id in ids:
        expected = event_id in remembered
        if not expected:
            remembered.append(event_id)
            del remembered[:-capacity]
        assert window.seen(event_id) is expected
    assert len(window) == len(remembered)


def test_clear_forgets_every_id() -> None:
    w = DedupWindow(capacity=3)
    assert not w.seen("a")
    w.clear()
    assert len(w) == 0 and not w.seen("a") and w.seen("a")
