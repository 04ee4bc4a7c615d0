"""InvalidRatioGuard: trips only above the limit, only after min_events, and recovers as the window slides."""

from __future__ import annotations

import pytest

from pipeline.domain.guard import InvalidRatioGuard, UpstreamBrokenError


def feed(guard: InvalidRatioGuard, valid: bool, n: int) -> None:
    for _ in range(n):
        guard.record(valid)


def test_no_trip_before_min_events_even_if_all_invalid() -> None:
    guard = InvalidRatioGuard(window=100, limit=0.5, min_events=20)
    feed(guard, False, 19)
    assert guard.ratio == 1.0
    with pytest.raises(UpstreamBrokenError):
        guard.record(False)


def test_trips_only_strictly_above_the_limit() -> None:
    guard = InvalidRatioGuard(window=10, limit=0.5, min_events=10)
    for i in range(10):
        guard.record(i % 2 == 0)  # exactly 50 % invalid: at the limit, not above
    assert guard.ratio == 0.5
    with pytest.raises(UpstreamBrokenError) as info:
        guard.record(False)  # slides out a valid event: 6 of 10 invalid
    assert info.value.ratio == 0.6
    message = str(info.value)
    assert "60.0%" in message and "window 10" in message and "limit 50.0%" in message
    assert "producer" in message


def test_mostly_valid_traffic_never_trips() -> None:
    guard = InvalidRatioGuard(window=50, limit=0.2, min_events=10)
    for i in range(10_000):
        guard.record(i % 10 != 0)  # 10 % invalid
    assert guard.ratio == pytest.approx(0.1)
    assert len(guard) == 50


def test_recovers_as_the_window_slides() -> None:
    guard = InvalidRatioGuard(window=10, limit=0.5, min_events=5)
    feed(guard, True, 5)
    feed(guard, False, 5)  # 5/10: not above
    with pytest.raises(UpstreamBrokenError):
        guard.record(False)  # 6/10
    # Window is now [4 valid, 6 invalid]. The guard keeps counting after tripping: the next 4 valid
    # events only push out older valid ones (still 6/10, still raising), the 5th pushes out an invalid one.
    for _ in range(4):
        with pytest.raises(UpstreamBrokenError):
            guard.record(True)
    guard.record(True)
    assert guard.ratio == 0.5
    feed(guard, True, 10)
    assert guard.ratio == 0.0
    guard.record(False)  # a single bad event in a healthy window is fine


@pytest.mark.parametrize(("window", "limit", "min_events"), [(0, 0.5, 1), (10, 0.0, 1), (10, 1.5, 1), (10, 0.5, 11)])
def test_invalid_configuration_is_refused(window: int, limit: float, min_events: int) -> None:
    with pytest.raises(ValueError):
        InvalidRatioGuard(window, limit, min_events)


def test_empty_ratio_is_zero() -> None:
    assert InvalidRatioGuard(10, 0.5, 1).ratio == 0.0
