"""Stop ingest when most recent input is invalid: that is a broken producer, not bad luck.

Individual bad events become failed events and the stream goes on. But when, say, half of the last
2000 events fail validation, something upstream changed (typically a producer deploy with a new field
meaning or a broken serializer). Routing the whole stream to the failed-events topic would hide the
outage behind green dashboards, so the agent raises instead and the worker stops loudly.
"""

from __future__ import annotations


class UpstreamBrokenError(RuntimeError):
    """The invalid share of recent input passed the limit; infrastructure-level, not a data error."""

    def __init__(self, ratio: float, invalid: int, events: int, window: int, limit: float) -> None:
        super().__init__(
            f"{invalid} of the last {events} events were invalid ({ratio:.1%}, window {window}, "
            f"limit {limit:.1%}): the upstream producer is probably broken (check recent producer "
            f"deploys and schema changes) - stopping instead of dead-lettering the whole stream"
        )
        self.ratio = ratio
        self.invalid = invalid
        self.events = events
        self.window = window
        self.limit = limit


class InvalidRatioGuard:
    """Share of invalid events among the last ``window`` events, tripping above ``limit``.

    Guarantees: ``record`` is O(1) (ring buffer plus running count); it raises
    :class:`UpstreamBrokenError` exactly when at least ``min_events`` events are in the window and the
    invalid share is strictly greater than ``limit``. The guard keeps counting after it raised, so it
    recovers as valid events push invalid ones out of the window. State is per process, not durable.
    """

    __slots__ = ("_buf", "_count", "_invalid", "_limit", "_min_events", "_pos", "_window")

    def __init__(self, window: int, limit: float, min_events: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 0.0 < limit <= 1.0:
            raise ValueError(f"limit must be in (0, 1], got {limit}")
        if not 1 <= min_events <= window:
            raise ValueError(f"min_events must be in 1..window ({window}), got {min_events}")
        self._window = window
        self._limit = limit
        self._min_events = min_events
        self._buf = bytearray(window)  # 1 = invalid
        self._pos = 0
        self._count = 0
        self._invalid = 0

    @property
    def ratio(self) -> float:
        """Invalid share of the events currently in the window (0.0 when empty)."""
        return self._invalid / self._count if self._count else 0.0

    def __len__(self) -> int:
        return self._count

    def record(self, valid: bool) -> None:
        """Count one event; raise :class:`UpstreamBrokenError` if the window is now over the limit."""
        pos = self._pos
        if self._count == self._window:
            self._invalid -= self._buf[pos]
        else:
            self._count += 1
        bad = 0 if valid else 1
        self._buf[pos] = bad
        self._invalid += bad
        self._pos = pos + 1 if pos + 1 < self._window else 0
        if self._count >= self._min_events and self._invalid > self._limit * self._count:
            raise UpstreamBrokenError(self.ratio, self._invalid, self._count, self._window, self._limit)
